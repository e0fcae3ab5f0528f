"""kubectl-slipway: a kubectl plugin that shows slipway's resources as trees and steers Rollouts.

`kubectl slipway get rollout|trainingjob|driftmonitor NAME [--watch]`, `promote|abort|retry NAME`,
`history NAME`. Renderers (rollout.py, training.py) are pure functions of the objects; client.py is the
only code that talks to the cluster; cli.py ties them together.
"""

from slipway.plugin.cli import main

__all__ = ["main"]
