"""Types shared by the four kinds: conditions, references, S3 locations, gates."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

GROUP = "slipway.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Kubernetes object names that also fit into derived names such as "<model>-v<N>".
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Any other object name (a Secret, a ServiceAccount): an RFC 1123 subdomain, as the apiserver requires. Checked
# at `kubectl apply`, so a name the apiserver would refuse (400 on every read) never reaches the operator.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A ServiceAccount's name, as several specs name one.
ServiceAccountName = Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN)]
CAMEL_CASE = r"^[A-Z][A-Za-z0-9]*$"


def cel(rule: str, message: str, **extra: Any) -> dict[str, Any]:
    """One `x-kubernetes-validations` entry; kept beside the model it guards."""
    return {"rule": rule, "message": message, **extra}


class Model(BaseModel):
    """Base for every API type: camelCase on the wire, unknown fields ignored (the apiserver prunes them)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")
    # Extra schema keys merged into this type's generated schema (CEL rules, list types).
    schema_extra: ClassVar[dict[str, Any]] = {}

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler.resolve_ref_schema(handler(core_schema))
        schema.update(cls.schema_extra)
        return schema

    def wire(self) -> dict[str, Any]:
        """The object as the API stores it: aliases, no unset optionals."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class LocalObjectReference(Model):
    """A reference to an object in the same namespace."""

    name: Annotated[
        str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN, description="Name of the referenced object.")
    ]


class SecretReference(Model):
    """A Secret in the same namespace holding `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`."""

    name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN, description="Name of the Secret.")]


class S3Connection(Model):
    """How to reach an S3-compatible store. Credentials come only from a Secret or a ServiceAccount."""

    schema_extra: ClassVar[dict[str, Any]] = {
        "x-kubernetes-validations": [
            cel(
                "!(has(self.credentialsSecretRef) && has(self.serviceAccountName))",
                "set credentialsSecretRef or serviceAccountName, not both",
            )
        ]
    }

    endpoint: Annotated[
        str | None,
        Field(
            default=None,
            max_length=2048,
            pattern=r"^https?://",
            description="S3 endpoint URL; empty means the operator's default (SLIPWAY_S3_ENDPOINT) or AWS.",
        ),
    ]
    region: Annotated[str | None, Field(default=None, max_length=64, description="S3 region.")]
    credentials_secret_ref: Annotated[
        SecretReference | None,
        Field(default=None, description="Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY keys."),
    ]
    service_account_name: Annotated[
        ServiceAccountName | None,
        Field(default=None, description="ServiceAccount whose workload identity grants S3 access."),
    ]


S3_URI = r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$"


class S3Location(S3Connection):
    """An object or prefix in an S3-compatible store."""

    uri: Annotated[str, Field(max_length=2048, pattern=S3_URI, description="s3://bucket/key or s3://bucket/prefix.")]


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(Model):
    """The Kubernetes API conventions' condition (metav1.Condition)."""

    type: Annotated[str, Field(max_length=316, description="Condition type, e.g. Ready, Reconciling, Stalled.")]
    status: Annotated[ConditionStatus, Field(description="True, False or Unknown.")]
    reason: Annotated[str, Field(max_length=1024, pattern=CAMEL_CASE, description="CamelCase reason.")]
    message: Annotated[str, Field(default="", max_length=32768, description="What happened, for a person.")]
    last_transition_time: Annotated[
        str, Field(description="When the status last changed (RFC 3339).", json_schema_extra={"format": "date-time"})
    ]
    observed_generation: Annotated[
        int | None, Field(default=None, ge=0, description="metadata.generation this condition was computed from.")
    ]


CONDITIONS_LIST: dict[str, Any] = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}


def conditions_field() -> Any:
    return Field(
        default_factory=list,
        max_length=32,
        description="Latest observations: Ready, Reconciling, Stalled and kind-specific types.",
        json_schema_extra=CONDITIONS_LIST,
    )


class Gate(Model):
    """A bound a model's metric must meet before the version may be served."""

    schema_extra: ClassVar[dict[str, Any]] = {
        "x-kubernetes-validations": [
            cel("has(self.min) || has(self.max)", "a gate needs min or max"),
            cel("!has(self.min) || !has(self.max) || self.min <= self.max", "a gate's min must not exceed its max"),
        ]
    }

    metric: Annotated[str, Field(min_length=1, max_length=63, description="Metric name, e.g. accuracy or rmse.")]
    min: Annotated[float | None, Field(default=None, description="Lowest acceptable value.")]
    max: Annotated[float | None, Field(default=None, description="Highest acceptable value.")]


class StatusBase(Model):
    """Fields every slipway status carries."""

    observed_generation: Annotated[
        int | None, Field(default=None, ge=0, description="The metadata.generation the status reflects.")
    ]
    conditions: Annotated[list[Condition], conditions_field()]
