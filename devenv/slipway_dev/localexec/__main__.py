"""Command line: python -m slipway_dev.localexec --kubeconfig K --state-dir D [--python P]."""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from slipway_dev import REPO
from slipway_dev.kube import Api

from . import images, podnet
from .containers import Config
from .executor import Executor

REPO_ROOT = REPO


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m slipway_dev.localexec", description=__doc__)
    p.add_argument("--kubeconfig", type=Path, default=Path(os.environ.get("KUBECONFIG") or "~/.kube/config"))
    p.add_argument(
        "--state-dir",
        type=Path,
        required=True,
        help="the cluster's state dir; the executor keeps logs and scratch files in <state-dir>/executor",
    )
    p.add_argument("--python", default=sys.executable, help="the interpreter `python` in a command means")
    p.add_argument("--repo-root", type=Path, default=REPO_ROOT, help="where runtimes/ is (default: this checkout)")
    p.add_argument("--max-grace", type=float, default=5.0, help="cap on a deleted pod's grace period, seconds")
    p.add_argument("--node", action="append", default=[], help="only pods bound to this node (repeatable)")
    p.add_argument(
        "--pod-range",
        default=podnet.DEFAULT_RANGE,
        help=(
            f"range pod IPs come from, inside {podnet.POD_NETWORK} (default {podnet.DEFAULT_RANGE}; "
            "its first address is the host's end)"
        ),
    )
    p.add_argument(
        "--service-cidr",
        default=podnet.DEFAULT_SERVICE_CIDR,
        help=f"the cluster's Service CIDR, routed to `unreachable` on the host (default {podnet.DEFAULT_SERVICE_CIDR})",
    )
    p.add_argument(
        "--bin-dir",
        type=Path,
        default=images.default_bin_dir(),
        help="where hack/build-serving.sh put kserve-agent (the kserve/agent image; default $SLIPWAY_BIN "
        "or ~/.cache/slipway/bin)",
    )
    p.add_argument(
        "--kserve-venv",
        type=Path,
        default=images.default_kserve_venv(),
        help=(
            "KServe's Python runtimes venv, built by hack/build-kserve-python.sh (kserve/storage-initializer, "
            "kserve/sklearnserver; default $SLIPWAY_KSERVE_VENV or ~/.cache/slipway/venvs/kserve)"
        ),
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    config = Config(
        root=args.state_dir.resolve() / "executor",
        python=args.python,
        repo_root=args.repo_root.resolve(),
        max_grace=args.max_grace,
        nodes=frozenset(args.node),
        pod_range=args.pod_range,
        service_cidr=args.service_cidr,
        bin_dir=args.bin_dir.expanduser().resolve(),
        kserve_venv=args.kserve_venv.expanduser().absolute(),
    )
    config.root.mkdir(parents=True, exist_ok=True)
    ready = config.root / "ready"
    ready.unlink(missing_ok=True)
    # Two executors on one state dir would both run every pod.
    lock = open(config.root / "lock", "w")  # noqa: SIM115 -- held for the life of the process
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print(f"localexec: another executor holds {config.root / 'lock'}", file=sys.stderr)
        return 1
    try:
        podnet.PodRange.parse(args.pod_range)
    except ValueError as err:
        print(f"localexec: --pod-range: {err}", file=sys.stderr)
        return 2
    try:
        podnet.check_service_cidr(args.service_cidr)
    except ValueError as err:
        print(f"localexec: --service-cidr: {err}", file=sys.stderr)
        return 2
    executor = Executor(Api.from_kubeconfig(args.kubeconfig.expanduser()), config)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logging.getLogger("localexec").info("%s: stopping", signal.Signals(signum).name)
        executor.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logging.getLogger("localexec").info("pid %d, python %s, logs in %s", os.getpid(), config.python, config.logs)
    try:
        executor.run()
    finally:
        ready.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
