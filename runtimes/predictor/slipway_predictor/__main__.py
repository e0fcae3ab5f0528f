import sys

from slipway_predictor.server import main

sys.exit(main())
