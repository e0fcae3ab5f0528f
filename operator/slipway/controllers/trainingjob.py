"""TrainingJob controller."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from slipway import conditions
from slipway.api.trainingjob import TrainingJob
from slipway.conditions import Cond
from slipway.controllers.base import Event, Result, invalid
from slipway.kube import Kube

CLASS_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
PYTORCH_ALGORITHMS = ("mlp",)
WAIT_FOR_DEPENDENCY = 30.0


@dataclass(frozen=True)
class Observed:
    secret_exists: bool | None  # None: no Secret is referenced


def problems(job: TrainingJob) -> list[str]:
    """What the schema cannot say about a spec."""
    spec, found = job.spec, []
    if spec.framework == "sklearn" and not CLASS_PATH.match(spec.algorithm):
        found.append(f"algorithm {spec.algorithm!r} is not a Python class path such as sklearn.svm.SVC")
    if spec.framework == "pytorch" and spec.algorithm not in PYTORCH_ALGORITHMS:
        found.append(
            f"algorithm {spec.algorithm!r} is not one of {', '.join(PYTORCH_ALGORITHMS)} for framework pytorch"
        )
    if spec.framework == "sklearn" and spec.resources and spec.resources.gpus > 0:
        found.append("scikit-learn does not use GPUs: set resources.gpus to 0 or use framework pytorch")
    return found


class TrainingJobController:
    kind = TrainingJob

    async def observe(self, obj: TrainingJob, kube: Kube) -> Observed:
        ref = obj.spec.output.credentials_secret_ref
        if ref is None:
            return Observed(secret_exists=None)
        return Observed(await kube.secret_exists(obj.metadata.get("namespace", ""), ref.name))

    def decide(self, obj: TrainingJob, observed: Observed, now: datetime) -> Result:
        if found := problems(obj):
            return invalid(found)
        if obj.spec.run_policy.suspend:
            conds = conditions.finished_unready("Suspended", "runPolicy.suspend is true")
            return Result(
                [*conds, Cond("Suspended", "True", "Suspended", "runPolicy.suspend is true")], {"phase": "Suspended"}
            )
        if observed.secret_exists is False:
            name = obj.spec.output.credentials_secret_ref.name if obj.spec.output.credentials_secret_ref else ""
            message = f"Secret {name!r} (spec.output.credentialsSecretRef) does not exist in this namespace"
            return Result(
                conditions.progressing("SecretNotFound", message),
                {"phase": "Pending"},
                [Event("Warning", "SecretNotFound", message)],
                requeue_after=WAIT_FOR_DEPENDENCY,
            )
        message = "spec is valid; waiting for the trainer pods to be launched"
        return Result(
            [*conditions.progressing("Pending", message), Cond("Suspended", "False", "NotSuspended")],
            {"phase": "Pending"},
        )
