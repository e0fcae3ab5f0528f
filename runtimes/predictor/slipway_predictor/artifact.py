"""Finding the artifact (a local model directory or an S3 object), and checking its sha256 before it is loaded.

The check comes before unpickling on purpose: a joblib file runs code when it is loaded, so only the exact
bytes the ModelVersion registered may be. boto3 reads the endpoint (AWS_ENDPOINT_URL), credentials and region
from the environment by itself; nothing here looks at the credentials.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from slipway_predictor.config import StartupError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# What the trainer writes, per framework; other names are accepted when a directory holds exactly one model.
ARTIFACT_NAMES = {"sklearn": ("model.joblib",), "pytorch": ("model.pt",)}
MODEL_SUFFIXES = (".joblib", ".pkl", ".pickle", ".pt", ".pth")


def framework_of(path: Path) -> str:
    return "pytorch" if path.suffix in (".pt", ".pth") else "sklearn"


def find_in_dir(model_dir: Path, framework: str | None) -> Path:
    """KServe's storage initializer puts the storageUri's object (or the objects under its prefix) in
    /mnt/models; pick the artifact there, preferring the trainer's file names."""
    if model_dir.is_file():
        return model_dir
    if not model_dir.is_dir():
        raise StartupError(f"the model directory {model_dir} does not exist")
    for name in _artifact_names(framework):
        if (model_dir / name).is_file():
            return model_dir / name
    candidates = sorted(p for p in model_dir.rglob("*") if p.is_file() and p.suffix in MODEL_SUFFIXES)
    if len(candidates) == 1:
        return candidates[0]
    found = ", ".join(str(p.relative_to(model_dir)) for p in candidates) or "none"
    raise StartupError(f"cannot tell which file in {model_dir} is the model (model files found: {found})")


def _artifact_names(framework: str | None) -> list[str]:
    return [name for fw, names in ARTIFACT_NAMES.items() if framework in (None, fw) for name in names]


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise StartupError(f"only s3:// storage URIs are supported, got {uri!r}")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise StartupError(f"storage URI {uri!r} names no bucket")
    return bucket, key.rstrip("/")


def make_client() -> S3Client:
    import boto3
    from botocore.config import Config

    # Custom endpoints (MinIO, moto, Ceph) rarely resolve bucket subdomains, so use path-style addressing there.
    custom = bool(os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3"))
    config = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
        s3={"addressing_style": "path"} if custom else None,
    )
    return boto3.session.Session().client("s3", config=config)


def download(uri: str, dest_dir: Path, framework: str | None, client: S3Client | None = None) -> Path:
    """Fetch the object at `uri`; when there is none, take `uri` as a prefix holding the trainer's artifact."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_s3_uri(uri)
    s3 = client or make_client()
    dest_dir.mkdir(parents=True, exist_ok=True)
    keys = [key] if key else []
    keys += [f"{key}/{name}".lstrip("/") for name in _artifact_names(framework)]
    last: Exception | None = None
    for candidate in keys:
        dest = dest_dir / Path(candidate).name
        try:
            s3.download_file(bucket, candidate, str(dest))
            return dest
        except ClientError as e:
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status != 404:
                raise StartupError(f"cannot download {uri}: {e}") from e
            last = e
        except BotoCoreError as e:
            raise StartupError(f"cannot download {uri}: {e}") from e
    raise StartupError(f"cannot download {uri}: no such object (tried {', '.join(keys)}): {last}")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path, expected: str | None) -> str:
    """Return the artifact's sha256; raise when SLIPWAY_ARTIFACT_SHA256 names another."""
    actual = sha256_of(path)
    if expected is not None and actual != expected:
        raise StartupError(
            f"refusing to serve {path.name}: its sha256 is {actual} but SLIPWAY_ARTIFACT_SHA256 is {expected} "
            "(the artifact was altered or replaced after the ModelVersion was registered)"
        )
    return actual


def write_termination_message(message: str) -> None:
    """Best effort, as the trainer does: Kubernetes shows the file's text as the container's last state."""
    path = os.environ.get("SLIPWAY_TERMINATION_LOG", "/dev/termination-log")
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(message[:4000])
    except OSError:
        pass
