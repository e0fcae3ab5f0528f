"""Command line: python -m slipway_dev.localcluster up|down|status|kubeconfig|install-crds."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .cluster import Cluster, ClusterError


def _parser() -> argparse.ArgumentParser:
    # Shared options go on every subcommand so they can be written after it
    # (`up --free-ports`), which is how people type them.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="cluster state directory (default: $SLIPWAY_CLUSTER_DIR or <repo>/.cluster)",
    )
    common.add_argument(
        "--free-ports",
        action="store_true",
        help="pick free ports instead of the defaults (16443 apiserver, 12379/12380 etcd); remembered in the state dir",
    )
    common.add_argument(
        "--bin-dir",
        type=Path,
        default=None,
        help="where the built binaries are (default: $SLIPWAY_BIN or ~/.cache/slipway/bin)",
    )

    parser = argparse.ArgumentParser(
        prog="python -m slipway_dev.localcluster", description="slipway's local control plane"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", parents=[common], help="start the cluster (no-op when already running)")
    up.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for readiness (default 300)")
    up.add_argument(
        "--no-executor",
        action="store_true",
        help="do not run the local executor (slipway's runtime pods then stay Pending until one runs, e.g. "
        "`python -m slipway_dev.localexec` by hand); stops one that an earlier `up` started",
    )
    up.add_argument(
        "--prometheus",
        action="store_true",
        help="run Prometheus on 127.0.0.1:19090 (ports.prometheus), which with --serving discovers and scrapes "
        "the predictor pods, Knative's queue-proxies and Traefik; an `up` without it stops one that runs",
    )
    up.add_argument(
        "--serving",
        action="store_true",
        help="run the real serving stack: KServe's controller manager with its webhooks (Standard mode), the "
        "Gateway API CRDs and Traefik, listening on 127.0.0.1:18086 (ports.ingress); built by "
        "hack/build-serving.sh; an `up` without it stops them",
    )
    up.add_argument(
        "--knative",
        action="store_true",
        help="run Knative Serving (controller, webhook, autoscaler, activator, each in a network namespace of its "
        "own) for KServe's Serverless mode; built by hack/build-knative.sh; an `up` without it stops them",
    )
    up.add_argument(
        "--kueue",
        action="store_true",
        help="run Kueue's manager (in a network namespace of its own) with its CRDs and webhooks: pods naming a "
        "LocalQueue are admitted by it; built by hack/build-kueue.sh; an `up` without it stops it",
    )
    up.add_argument(
        "--argo-rollouts",
        action="store_true",
        help="run Argo Rollouts' analysis controller (in a network namespace of its own) with its CRDs, for "
        "bench/compare_argo.py; built by hack/build-argo-rollouts.sh; an `up` without it stops it (its CRDs stay, "
        "and with them kubectl's `rollout` means Argo's: name slipway's `mro` or rollouts.slipway.dev)",
    )
    up.add_argument("--scrape-interval", default="1s", help="Prometheus scrape interval (default 1s)")
    down = sub.add_parser("down", parents=[common], help="stop the cluster's processes")
    down.add_argument("--purge", action="store_true", help="also delete the state directory")
    status = sub.add_parser("status", parents=[common], help="show processes and readiness; exit 1 if not ready")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    kc = sub.add_parser("kubeconfig", parents=[common], help="print the kubeconfig path")
    kc.add_argument("--raw", action="store_true", help="print the kubeconfig's contents instead")
    sub.add_parser("install-crds", parents=[common], help="(re)apply crds/ and the KServe CRDs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cluster = Cluster(
        args.state_dir,
        free_ports=args.free_ports,
        bin_dir=args.bin_dir,
        executor=not getattr(args, "no_executor", False),
        prometheus=getattr(args, "prometheus", False),
        serving=getattr(args, "serving", False),
        knative=getattr(args, "knative", False),
        kueue=getattr(args, "kueue", False),
        argo_rollouts=getattr(args, "argo_rollouts", False),
        scrape_interval=getattr(args, "scrape_interval", "1s"),
    )
    try:
        if args.command == "up":
            cluster.up(timeout=args.timeout)
        elif args.command == "down":
            cluster.down(purge=args.purge)
        elif args.command == "status":
            status = cluster.status()
            if args.json:
                print(json.dumps(status, indent=2))
            else:
                print(f"state dir:  {status['state_dir']}")
                print(f"server:     {status['server']}  ({'ready' if status['ready'] else 'NOT ready'})")
                print(f"kubeconfig: {status['kubeconfig']}")
                for name, pid in status["processes"].items():
                    print(f"  {name:<24} {'pid ' + str(pid) if pid else 'not running'}")
                print(f"container logs: {status['container_logs']}")
                for key, what in (("ingress_url", "Traefik (Gateway API)"), ("prometheus_url", "Prometheus")):
                    if key in status:
                        print(f"{what}: {status[key]}")
            return 0 if status["ready"] else 1
        elif args.command == "kubeconfig":
            if not cluster.kubeconfig.exists():
                raise ClusterError(f"no kubeconfig at {cluster.kubeconfig}: run `up` first")
            if args.raw:
                sys.stdout.write(cluster.kubeconfig.read_text())
            else:
                print(cluster.kubeconfig)
        elif args.command == "install-crds":
            for name in cluster.install_crds():
                print(f"established: {name}")
    except ClusterError as err:
        print(f"localcluster: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
