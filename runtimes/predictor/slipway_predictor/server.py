"""`python -m slipway_predictor`: load and check the artifact, then serve it with kserve's ModelServer.

    python -m slipway_predictor --model_name NAME [--model_dir DIR | --storage_uri s3://...] [--http_port 8080]

Every kserve ModelServer flag is accepted as well (`--help` lists them). Differences from kserve's defaults:
gRPC is off (the ServingRuntime serves v1 and v2 over HTTP only; `--enable_grpc true` turns it on), and there
is exactly one worker process, since the metrics live in this process's registry (scale with replicas).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

from slipway_predictor import artifact, backends, limits
from slipway_predictor.config import Settings, StartupError
from slipway_predictor.metrics import PROBABILITY_BUCKETS, VALUE_BUCKETS, PredictorMetrics, install
from slipway_predictor.schema import Schema

log = logging.getLogger("kserve.slipway_predictor")  # under "kserve": kserve's log format and level apply


def build_parser() -> argparse.ArgumentParser:
    from kserve import model_server  # type: ignore[import-untyped]

    parser = argparse.ArgumentParser(
        prog="python -m slipway_predictor",
        description="Serve one slipway ModelVersion (scikit-learn joblib or TorchScript) over KServe v1 and v2.",
        parents=[model_server.parser],
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--model_dir", help="a directory (or file) holding the artifact, e.g. /mnt/models")
    where.add_argument("--storage_uri", help="s3://bucket/key of the artifact (or the prefix holding it)")
    parser.set_defaults(enable_grpc=False)
    return parser


def prepare(args: argparse.Namespace, env: dict[str, str], workdir: Path) -> tuple[Settings, backends.Backend]:
    """Everything that may refuse to start, in order: configuration, artifact, checksum, load."""
    settings = Settings.from_env(env)
    model_dir = args.model_dir or ""
    if args.storage_uri or model_dir.startswith("s3://"):
        uri = args.storage_uri or model_dir
        log.info("downloading %s", uri)
        path = artifact.download(uri, workdir, settings.framework)
    else:
        path = artifact.find_in_dir(Path(model_dir), settings.framework)
    digest = artifact.verify(path, settings.sha256)
    if settings.sha256 is None:
        log.warning("SLIPWAY_ARTIFACT_SHA256 is not set: serving %s (sha256 %s) unverified", path.name, digest)
    framework = settings.framework or artifact.framework_of(path)
    backend = backends.load(path, framework, settings.signature, settings.classes)
    if settings.signature is None:
        log.warning("SLIPWAY_SIGNATURE is not set: checking requests against the model's own column names")
    log.info(
        "loaded %s (%s, %s, sha256 %s) as ModelVersion %s",
        path.name,
        framework,
        backend.task,
        digest,
        settings.model_version,
    )
    return settings, backend


def main(argv: list[str] | None = None) -> int:
    from kserve import ModelServer, model_server
    from kserve.logging import configure_logging  # type: ignore[import-untyped]

    from slipway_predictor.model import SlipwayModel

    args = build_parser().parse_args(argv)
    if args.workers != 1:
        print("slipway_predictor: --workers must be 1 (one process per pod; scale with replicas)", file=sys.stderr)
        return 2
    if args.configure_logging:
        configure_logging(args.log_config_file)
    # The downloaded artifact goes under TMPDIR: the image's root file system is read-only, /tmp an emptyDir.
    with tempfile.TemporaryDirectory(prefix="slipway-model-") as tmp:
        try:
            settings, backend = prepare(args, dict(os.environ), Path(tmp))
        except StartupError as e:
            log.error("not starting: %s", e)
            artifact.write_termination_message(str(e))
            return 1
        buckets = settings.score_buckets or (PROBABILITY_BUCKETS if backend.task == "classification" else VALUE_BUCKETS)
        metrics = PredictorMetrics(args.model_name, settings.model_version, buckets)
        model = SlipwayModel(args.model_name, settings.model_version, backend, Schema(backend.signature), metrics)
        model.load()
        # Limits first: the metrics middleware, added after, is outside it and counts its 413s and 408s.
        limits.install(model_server.app, settings.max_body_bytes, settings.body_timeout_seconds)
        install(model_server.app, metrics)
        server = ModelServer(
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            workers=1,
            enable_grpc=args.enable_grpc,
            enable_docs_url=args.enable_docs_url,
            enable_latency_logging=args.enable_latency_logging,
            access_log_format=args.access_log_format,
            event_loop=args.event_loop,
            timeout_keep_alive=args.timeout_keep_alive,
            max_threads=args.max_threads,
            max_asyncio_workers=args.max_asyncio_workers,
        )
        server.start([model])
    return 0
