"""Command line: PYTHONPATH=hack python -m localkserve --kubeconfig K --state-dir D [--port 18081]."""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from localexec.kube import Api

from .controller import Controller, Settings
from .proxy import Gateway
from .routing import Table
from .status import SERVERLESS, STANDARD

DEFAULT_PORT = 18081


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m localkserve", description="the local KServe gateway (Serverless mode only)"
    )
    p.add_argument("--kubeconfig", type=Path, default=Path(os.environ.get("KUBECONFIG") or "~/.kube/config"))
    p.add_argument("--state-dir", type=Path, required=True, help="the cluster's state dir (<state-dir>/localkserve)")
    p.add_argument("--host", default="127.0.0.1", help="address the data plane listens on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"data plane port (default {DEFAULT_PORT})")
    p.add_argument("--file-sd", type=Path, default=None, help="Prometheus file_sd file to keep up to date")
    p.add_argument("--ingress-domain", default="example.com", help="domain of status URLs (KServe's default)")
    p.add_argument(
        "--default-deployment-mode",
        choices=(SERVERLESS, STANDARD),
        default=SERVERLESS,
        help="mode of an InferenceService without the serving.kserve.io/deploymentMode annotation "
        "(only Serverless ones are played; Standard mode is KServe's own controller's)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed of the traffic split's random choices")
    p.add_argument("--resync", type=float, default=10.0, help="seconds between reconciles of everything")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    root = args.state_dir.resolve() / "localkserve"
    root.mkdir(parents=True, exist_ok=True)
    ready = root / "ready"
    ready.unlink(missing_ok=True)
    lock = open(root / "lock", "w")  # noqa: SIM115 -- held for the life of the process
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print(f"localkserve: another gateway holds {root / 'lock'}", file=sys.stderr)
        return 1
    table = Table(args.seed)
    gateway = Gateway((args.host, args.port), table)
    settings = Settings(args.ingress_domain, args.default_deployment_mode, args.resync, args.file_sd)
    controller = Controller(Api.from_kubeconfig(args.kubeconfig.expanduser()), table, settings)
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logging.getLogger("localkserve").info("%s: stopping", signal.Signals(signum).name)
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    controller.start()
    threading.Thread(target=gateway.serve_forever, name="http", daemon=True).start()
    url = f"http://{args.host}:{gateway.port}"
    ready.write_text(json.dumps({"pid": os.getpid(), "url": url}) + "\n")
    logging.getLogger("localkserve").info("pid %d, serving %s", os.getpid(), url)
    try:
        done.wait()
    finally:
        ready.unlink(missing_ok=True)
        controller.stop()
        gateway.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
