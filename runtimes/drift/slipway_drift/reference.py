"""Reference data: a parquet object in S3, copied to the state directory once, read from there after.

Blocking (boto3, pyarrow): callers run these in a worker thread.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from pathlib import Path
from typing import Any

from slipway_drift.config import Column, VersionConfig
from slipway_drift.detect import Reference

CHUNK = 1 << 20


class ReferenceUnavailable(RuntimeError):
    """The reference cannot be used; the message is shown in GET as `referenceError`."""


def split_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


@functools.cache
def s3_client(endpoint: str | None, region: str | None) -> Any:
    """One S3 client per (endpoint, region) for the runtime's life, shared by the I/O threads (boto3's clients are
    thread-safe; making one loads botocore's service model, tens of milliseconds of CPU per reference). The
    default credential chain (AWS_* variables, web identity, instance roles; refreshed by botocore as they expire);
    AWS_ENDPOINT_URL is honoured by boto3 itself unless the version names its own endpoint."""
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region)


def ensure_cached(version: VersionConfig, path: Path) -> None:
    """Download the reference to `path` unless the copy there came from the same place."""
    meta = path.with_suffix(".json")
    key = version.reference_key()
    if path.exists() and meta.exists():
        try:
            if json.loads(meta.read_text()) == key:
                return
        except (OSError, ValueError):
            pass
    import botocore.exceptions

    bucket, obj = split_uri(version.reference_uri)
    tmp = path.with_name(path.name + ".tmp")
    try:
        # One GET streamed to the file (download_file's transfer manager asks HEAD first and starts a thread pool
        # per object: most of the runtime's CPU when thousands of monitors are configured at once).
        body = s3_client(version.endpoint, version.region).get_object(Bucket=bucket, Key=obj)["Body"]
        with body, tmp.open("wb") as out:
            shutil.copyfileobj(body, out, CHUNK)
    except botocore.exceptions.ClientError as e:
        code = e.response.get("Error", {}).get("Code", "error")
        raise ReferenceUnavailable(f"cannot read {version.reference_uri}: {code}") from None
    except (botocore.exceptions.BotoCoreError, OSError) as e:
        raise ReferenceUnavailable(f"cannot read {version.reference_uri}: {type(e).__name__}: {e}") from None
    os.replace(tmp, path)
    _atomic_write(meta, json.dumps(key))


def load(path: Path, columns: tuple[Column, ...]) -> Reference:
    """The monitored columns of a cached reference; rows with a missing value in any of them are left out."""
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    try:
        schema = pq.read_schema(path)
        missing = [c.name for c in columns if c.name not in schema.names]
        if missing:
            raise ReferenceUnavailable(f"reference lacks column(s) {', '.join(missing[:10])}")
        frame = pq.read_table(path, columns=[c.name for c in columns]).to_pandas().dropna()
    except (pa.ArrowException, OSError) as e:
        raise ReferenceUnavailable(f"reference is not a readable parquet file: {type(e).__name__}") from None
    if len(frame) < 2:
        raise ReferenceUnavailable(f"reference has {len(frame)} complete row(s); at least 2 are needed")
    data: dict[str, Any] = {c.name: frame[c.name].to_numpy() for c in columns}
    for c in columns:
        if not c.categorical and data[c.name].dtype.kind not in "biuf":
            raise ReferenceUnavailable(f"reference column {c.name} is not numeric")
    return Reference.from_columns(columns, data)


def fetch(version: VersionConfig, columns: tuple[Column, ...], path: Path) -> Reference:
    ensure_cached(version, path)
    return load(path, columns)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
