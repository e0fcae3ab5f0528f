"""S3 access with bounded retries, and the translation of boto's errors into the contract's exit codes.

boto3 reads the endpoint (`AWS_ENDPOINT_URL`), credentials and region from the environment by itself; nothing
here looks at the credentials, so they cannot end up in a log line or a termination message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, NoCredentialsError, NoRegionError
from botocore.exceptions import ConnectionError as BotoConnectionError

from slipway_trainer.config import split_s3_uri
from slipway_trainer.errors import InvalidInput, TrainerError, Transient

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Three attempts with standard-mode exponential backoff (at most ~1 s, then ~2 s) plus short connect timeouts:
# an unreachable endpoint fails within seconds, and the controller's retry of the whole gang (exit 75) covers
# longer outages better than a pod that hangs.
RETRIES = {"max_attempts": 3, "mode": "standard"}
CONNECT_TIMEOUT_S = 3
READ_TIMEOUT_S = 30

_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "ServiceUnavailable",
    "OperationAborted",
}
_NOT_FOUND_CODES = {"NoSuchKey", "NotFound", "404", "NoSuchBucket"}
_DENIED_CODES = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken"}


def make_client() -> S3Client:
    # Custom endpoints (MinIO, moto, Ceph) rarely resolve bucket subdomains, so use path-style addressing there.
    custom = bool(os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3"))
    config = Config(
        retries=RETRIES,  # type: ignore[arg-type]
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        s3={"addressing_style": "path"} if custom else None,
    )
    try:
        return boto3.session.Session().client("s3", config=config)
    except (ValueError, NoRegionError) as e:
        raise InvalidInput(f"cannot configure the S3 client: {e}") from e


class S3:
    """The handful of calls the trainer makes, each raising InvalidInput, Transient or TrainerError."""

    def __init__(self, client: S3Client | None = None) -> None:
        self._client = client

    @property
    def client(self) -> S3Client:
        if self._client is None:  # created on first use: bundled datasets need no S3 until the outputs
            self._client = make_client()
        return self._client

    def check_output(self, uri: str) -> None:
        """Before training: a missing output bucket or an unreachable endpoint should cost seconds, not a whole
        training run. Refused access is let through: credentials may allow PutObject without HeadBucket."""
        bucket, _ = split_s3_uri(uri + "/x")
        try:
            self.client.head_bucket(Bucket=bucket)
        except ClientError as e:
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404:
                raise InvalidInput(f"the output bucket {bucket} does not exist (output {uri})") from e
            if status != 403:
                raise classify(e, "write to", uri) from e
        except Exception as e:
            raise classify(e, "write to", uri) from e

    def get_bytes(self, uri: str) -> bytes:
        bucket, key = split_s3_uri(uri)
        try:
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as e:
            raise classify(e, "read", uri) from e

    def upload_file(self, path: Path, uri: str, content_type: str) -> None:
        bucket, key = split_s3_uri(uri)
        try:
            # upload_file switches to multipart for large models; put_object would stop at 5 GB.
            self.client.upload_file(str(path), bucket, key, ExtraArgs={"ContentType": content_type})
        except Exception as e:
            raise classify(e, "write", uri) from e

    def put_bytes(self, uri: str, data: bytes, content_type: str) -> None:
        bucket, key = split_s3_uri(uri)
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
        except Exception as e:
            raise classify(e, "write", uri) from e


def classify(exc: BaseException, action: str, uri: str) -> BaseException:
    """Map a failed S3 call to the contract: missing object or refused access -> InvalidInput (a retry sees the
    same), unreachable / timing out / throttled / 5xx -> Transient, anything else -> TrainerError."""
    # boto3's transfer manager wraps the ClientError it got (S3UploadFailedError); look through the chain.
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ClientError | BotoCoreError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return exc
    # HTTPClientError covers read timeouts and connections dropped mid-body.
    if isinstance(cause, BotoConnectionError | HTTPClientError):
        return Transient(f"S3 unreachable while trying to {action} {uri}: {cause}")
    if isinstance(cause, NoCredentialsError):
        return InvalidInput(f"no S3 credentials to {action} {uri}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if isinstance(cause, ClientError):
        return _classify_client_error(cause, action, uri)
    return TrainerError(f"S3 error while trying to {action} {uri}: {cause}")


def _classify_client_error(e: ClientError, action: str, uri: str) -> TrainerError:
    err: Any = e.response.get("Error", {})
    code = str(err.get("Code", ""))
    status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in _NOT_FOUND_CODES or status == 404:
        what = "bucket" if code == "NoSuchBucket" else "object"
        return InvalidInput(f"cannot {action} {uri}: the {what} does not exist ({code or status})")
    if code in _DENIED_CODES or status == 403:
        return InvalidInput(f"cannot {action} {uri}: access denied ({code or status}); check the credentials Secret")
    if code in _TRANSIENT_CODES or status >= 500 or status == 429:
        return Transient(f"S3 failed to {action} {uri}: {code or status}, retry later")
    return TrainerError(f"S3 refused to {action} {uri}: {code or status}: {err.get('Message', '')}")
