from slipway_trainer.cli import main

raise SystemExit(main())
