"""S3 access for the operator: checksums, object metadata and trainer manifests.

boto3 is synchronous, so every call runs in a worker thread. Credentials come from a Secret (read by the
caller through the kube layer) or the operator's own identity; they are never logged or put in status.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

CHUNK = 1 << 20
MISSING_CODES = {"404", "NoSuchKey", "NoSuchBucket", "NotFound"}
# Bounded so that an unreachable endpoint costs seconds, not minutes, of a reconcile.
CLIENT_CONFIG = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=3, read_timeout=20)


class StorageError(Exception):
    """S3 could not answer (unreachable, timing out, refusing): try again later."""


class ObjectMissing(Exception):
    """The bucket or key does not exist."""


@dataclass(frozen=True)
class S3Access:
    endpoint: str | None
    region: str
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    etag: str


def split_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def join_uri(prefix: str, *parts: str) -> str:
    return "/".join([prefix.rstrip("/"), *(p.strip("/") for p in parts)])


class S3:
    """One boto3 client per distinct access (endpoint + credentials)."""

    def __init__(self) -> None:
        self._clients: dict[S3Access, Any] = {}

    def _client(self, access: S3Access) -> Any:
        if access not in self._clients:
            self._clients[access] = boto3.session.Session().client(
                "s3",
                endpoint_url=access.endpoint or None,
                region_name=access.region,
                aws_access_key_id=access.access_key,
                aws_secret_access_key=access.secret_key,
                config=CLIENT_CONFIG,
            )
        return self._clients[access]

    async def head(self, access: S3Access, uri: str) -> ObjectInfo:
        bucket, key = split_uri(uri)
        res = await self._call(self._client(access).head_object, Bucket=bucket, Key=key)
        return ObjectInfo(int(res["ContentLength"]), str(res.get("ETag", "")).strip('"'))

    async def sha256(self, access: S3Access, uri: str) -> tuple[str, ObjectInfo]:
        """Streams the object through sha256 (artifacts can be large, memory stays flat); with the size and ETag
        of what was read, so that a first verification needs no HEAD of its own."""
        bucket, key = split_uri(uri)
        res = await self._call(self._client(access).get_object, Bucket=bucket, Key=key)
        info = ObjectInfo(int(res["ContentLength"]), str(res.get("ETag", "")).strip('"'))

        def digest() -> str:
            h = hashlib.sha256()
            for chunk in res["Body"].iter_chunks(CHUNK):
                h.update(chunk)
            return h.hexdigest()

        hexdigest: str = await self._call(digest)
        return hexdigest, info

    async def read_json(self, access: S3Access, uri: str, limit: int = 4 << 20) -> dict[str, Any]:
        bucket, key = split_uri(uri)
        res = await self._call(self._client(access).get_object, Bucket=bucket, Key=key)
        raw = await self._call(res["Body"].read, limit + 1)
        if len(raw) > limit:
            raise ValueError(f"{uri} is larger than {limit} bytes")
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError(f"{uri} is not a JSON object")
        return doc

    @staticmethod
    async def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in MISSING_CODES:
                raise ObjectMissing(code) from e
            raise StorageError(f"S3 answered {code or 'an error'}") from e
        except BotoCoreError as e:
            raise StorageError(type(e).__name__ + ": " + str(e)) from e
