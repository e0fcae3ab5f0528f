import sys

from slipway_drift.server import main

sys.exit(main())
