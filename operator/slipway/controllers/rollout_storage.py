"""The storage identity a Rollout makes for KServe's storage initializer: a ServiceAccount and a Secret.

KServe downloads `storageUri` into /mnt/models with an init container it injects (its pod webhook). That
container never sees the model container's env: it gets S3 credentials only from the pod's ServiceAccount's
`secrets` (or a storage-spec Secret), and the endpoint and region only from that Secret's
`serving.kserve.io/s3-*` annotations (or KServe's global configuration). So for a ModelVersion whose artifact
names a credentialsSecretRef, the Rollout owns a Secret holding a copy of those credentials under both key
spellings KServe may be configured with, annotated with the artifact's endpoint and region, and a
ServiceAccount listing it; the predictor runs as that ServiceAccount. See docs/serving-contract.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from slipway import contract
from slipway.api.common import API_VERSION
from slipway.api.modelversion import ModelVersion
from slipway.config import Settings
from slipway.controllers import rollout_isvc as isvc

S3_ENDPOINT, S3_REGION, S3_HTTPS = (
    "serving.kserve.io/s3-endpoint",
    "serving.kserve.io/s3-region",
    "serving.kserve.io/s3-usehttps",
)
# KServe's credentials.s3 s3AccessKeyIDName / s3SecretAccessKeyName: the v0.20 configmap says AWS_*, the code's
# defaults (when the configmap leaves them out) are awsAccessKeyID / awsSecretAccessKey. Both are written.
KEYS = {"AWS_ACCESS_KEY_ID": ("AWS_ACCESS_KEY_ID", "awsAccessKeyID"),
        "AWS_SECRET_ACCESS_KEY": ("AWS_SECRET_ACCESS_KEY", "awsSecretAccessKey")}  # fmt: skip


def source(mv: ModelVersion, settings: Settings) -> tuple[str, str, str] | None:
    """(credentials Secret, endpoint, region) the storage initializer needs for `mv`, or None when it needs no
    identity of the Rollout's: no credentials, or a ServiceAccount of the user's (workload identity), which
    then must carry the credentials itself."""
    art = mv.spec.artifact
    if art.credentials_secret_ref is None or art.service_account_name:
        return None
    return art.credentials_secret_ref.name, art.endpoint or settings.s3_endpoint, art.region or settings.s3_region


def account_name(isvc_name: str, src: tuple[str, str, str]) -> str:
    return f"{isvc_name}-s3-{hashlib.sha256(json.dumps(src).encode()).hexdigest()[:8]}"


def manifests(
    rollout_meta: dict[str, Any], isvc_name: str, src: tuple[str, str, str], data: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Secret, ServiceAccount) for `src`, with the credentials `data` read from the user's Secret."""
    name, (_, endpoint, region) = account_name(isvc_name, src), src
    meta = {
        "name": name,
        "namespace": rollout_meta.get("namespace"),
        "labels": {**contract.MANAGED, contract.ROLLOUT: rollout_meta["name"]},
        "ownerReferences": [isvc.owner_reference(API_VERSION, "Rollout", rollout_meta)],
    }
    annotations = {S3_REGION: region}
    if endpoint:
        annotations |= {S3_ENDPOINT: endpoint, S3_HTTPS: "1" if endpoint.startswith("https://") else "0"}
    encoded = {
        key: base64.b64encode(data[src_key].encode()).decode()
        for src_key, keys in KEYS.items()
        if src_key in data
        for key in keys
    }
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {**meta, "annotations": annotations},
              "type": "Opaque", "data": encoded}  # fmt: skip
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta, "secrets": [{"name": name}],
               "automountServiceAccountToken": False}  # fmt: skip
    return secret, account


def intent(secret: dict[str, Any], account: dict[str, Any], source_version: str) -> str:
    """The digest recorded for the pair: the Secret without its data (never hashed into status) plus the
    resourceVersion of the Secret it copies, which changes whenever the credentials do."""
    bare = {**secret, "data": sorted(secret["data"])}
    return isvc.digest({"secret": bare, "account": account, "from": source_version})
