"""Operator settings, from environment variables with documented defaults."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

from slipway import __version__, sharding


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default).strip()


def _list(name: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in os.environ.get(name, "").split(",") if v.strip())


def _priority(raw: str) -> int:
    """Kopf pauses every peer when the highest priorities tie, and a Deployment cannot give its replicas
    different numbers: unset, each process draws its own, so exactly one replica of several is active."""
    return int(raw.strip()) if raw.strip() else random.SystemRandom().randrange(1, 2**31)


@dataclass(frozen=True)
class Settings:
    """Every setting, its environment variable and default. Documented in README ("Configuration")."""

    namespaces: tuple[str, ...] = ()  # SLIPWAY_NAMESPACES: comma list; empty = all namespaces
    http_host: str = "0.0.0.0"  # SLIPWAY_HTTP_HOST: /healthz, /readyz and /metrics
    http_port: int = 8080  # SLIPWAY_HTTP_PORT (0 disables the endpoint)
    log_format: str = "text"  # SLIPWAY_LOG_FORMAT: text | json
    log_level: str = "INFO"  # SLIPWAY_LOG_LEVEL
    peering: str = "slipway"  # SLIPWAY_PEERING: Kopf peering name for HA; empty = standalone
    # SLIPWAY_SHARD: the shard this process is (sharding.py): empty = the default shard, which reconciles every
    # object without the sharding.slipway.dev/key label; a name = only objects labelled with it.
    shard: str = sharding.DEFAULT_SHARD
    priority: int = 0  # SLIPWAY_PRIORITY: Kopf peering priority of this replica; unset = random (see _priority)
    # SLIPWAY_PEERING_LIFETIME: seconds a replica counts as alive after its last keepalive (Kopf renews it 5-10 s
    # before it runs out). A replica killed without a goodbye (SIGKILL, node loss) holds its standby back this
    # long: Kopf's default of 60 s made every failover a minute; 15 s is the lease of controller-runtime's and
    # Argo Rollouts' leader election.
    peering_lifetime: int = 15
    # SLIPWAY_RESYNC_SECONDS: periodic re-reconcile of every object, a safety net: what an object waits for wakes it
    # (watches of the four kinds, their pods and InferenceServices, the drift runtime's listing) or has its own timer.
    resync_seconds: float = 3600.0
    # SLIPWAY_VERIFY_SECONDS: how often a verified artifact is asked again (a HEAD; the full sha256 only when its
    # ETag changed). A spec change, or a verifiedEtag someone cleared, asks at once.
    verify_seconds: float = 3600.0
    # SLIPWAY_MAX_CONCURRENT_RECONCILES: passes that run at once, over all kinds (controller-runtime's
    # MaxConcurrentReconciles). At start-up every object is reconciled: unbounded, 10,000 passes each held their
    # state at once (most of the operator's memory) and each finished only when they all did.
    max_concurrent_reconciles: int = 32
    trainer_image: str = f"ghcr.io/slipway-dev/trainer:{__version__}"  # SLIPWAY_TRAINER_IMAGE
    s3_endpoint: str = ""  # SLIPWAY_S3_ENDPOINT: default S3 endpoint; empty = AWS
    s3_region: str = "us-east-1"  # SLIPWAY_S3_REGION
    drift_url: str = (
        ""  # SLIPWAY_DRIFT_URL: the shared drift runtime, e.g. http://slipway-drift.slipway-system.svc:8080
    )
    drift_poll_seconds: float = 10.0  # SLIPWAY_DRIFT_POLL_SECONDS: how often a DriftMonitor reads its results
    # SLIPWAY_GATEWAY: <namespace>/<name> of the Gateway API Gateway a Standard-mode Rollout's HTTPRoute attaches
    # to (KServe's ingress.kserveIngressGateway); empty = leave ingress to KServe, and the canary gets no requests.
    gateway: str = "kserve/kserve-ingress-gateway"

    @classmethod
    def from_env(cls) -> Settings:
        d = cls()
        return cls(
            namespaces=_list("SLIPWAY_NAMESPACES"),
            http_host=_env("SLIPWAY_HTTP_HOST", d.http_host),
            http_port=int(_env("SLIPWAY_HTTP_PORT", str(d.http_port))),
            log_format=_env("SLIPWAY_LOG_FORMAT", d.log_format).lower(),
            log_level=_env("SLIPWAY_LOG_LEVEL", d.log_level).upper(),
            peering=_env("SLIPWAY_PEERING", d.peering),
            shard=_env("SLIPWAY_SHARD", d.shard),
            priority=_priority(os.environ.get("SLIPWAY_PRIORITY", "")),
            peering_lifetime=int(_env("SLIPWAY_PEERING_LIFETIME", str(d.peering_lifetime))),
            resync_seconds=float(_env("SLIPWAY_RESYNC_SECONDS", str(d.resync_seconds))),
            verify_seconds=float(_env("SLIPWAY_VERIFY_SECONDS", str(d.verify_seconds))),
            max_concurrent_reconciles=int(_env("SLIPWAY_MAX_CONCURRENT_RECONCILES", str(d.max_concurrent_reconciles))),
            trainer_image=_env("SLIPWAY_TRAINER_IMAGE", d.trainer_image),
            s3_endpoint=_env("SLIPWAY_S3_ENDPOINT", d.s3_endpoint),
            s3_region=_env("SLIPWAY_S3_REGION", d.s3_region),
            drift_url=_env("SLIPWAY_DRIFT_URL", d.drift_url).rstrip("/"),
            drift_poll_seconds=float(_env("SLIPWAY_DRIFT_POLL_SECONDS", str(d.drift_poll_seconds))),
            gateway=_env("SLIPWAY_GATEWAY", d.gateway),
        )

    @property
    def peering_name(self) -> str:
        """The Kopf peering this replica joins: SLIPWAY_PEERING, suffixed with a named shard's name."""
        return sharding.peering_name(self.peering, self.shard)

    def validate(self) -> None:
        sharding.validate(self.shard)
        if self.log_format not in ("text", "json"):
            raise ValueError(f"SLIPWAY_LOG_FORMAT must be text or json, not {self.log_format!r}")
        if not 0 <= self.http_port < 65536:
            raise ValueError(f"SLIPWAY_HTTP_PORT out of range: {self.http_port}")
        if self.peering_lifetime < 10:
            raise ValueError("SLIPWAY_PEERING_LIFETIME must be >= 10 (Kopf renews it 5-10 s before it runs out)")
        if self.resync_seconds <= 0:
            raise ValueError("SLIPWAY_RESYNC_SECONDS must be positive")
        if self.verify_seconds < 0:
            raise ValueError("SLIPWAY_VERIFY_SECONDS must be >= 0 (0: ask S3 at every pass)")
        if self.max_concurrent_reconciles < 1:
            raise ValueError("SLIPWAY_MAX_CONCURRENT_RECONCILES must be >= 1")
        if self.drift_poll_seconds <= 0:
            raise ValueError("SLIPWAY_DRIFT_POLL_SECONDS must be positive")
        if self.gateway and len(self.gateway.split("/")) != 2:
            raise ValueError(f"SLIPWAY_GATEWAY must be <namespace>/<name>, not {self.gateway!r}")
        if self.drift_url and not self.drift_url.startswith(("http://", "https://")):
            raise ValueError(f"SLIPWAY_DRIFT_URL must be an http(s) URL, not {self.drift_url!r}")
