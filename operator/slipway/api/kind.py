"""What every top-level kind declares besides its schema: names, printer columns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from slipway.api.common import GROUP, Model, StatusBase


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0

    def wire(self) -> dict[str, Any]:
        col: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            col["description"] = self.description
        if self.priority:
            col["priority"] = self.priority
        return col


def condition_column(name: str, condition: str, priority: int = 0) -> PrinterColumn:
    return PrinterColumn(
        name,
        f'.status.conditions[?(@.type=="{condition}")].status',
        description=f"{condition} condition",
        priority=priority,
    )


READY_COLUMN = condition_column("Ready", "Ready")
AGE_COLUMN = PrinterColumn("Age", ".metadata.creationTimestamp", type="date")


class Kind(Model):
    """A namespaced custom resource of slipway.dev/v1alpha1."""

    kind: ClassVar[str]
    plural: ClassVar[str]
    short_names: ClassVar[tuple[str, ...]]
    printer_columns: ClassVar[tuple[PrinterColumn, ...]]
    # A record the operator writes whole (CanaryAnalysis) has none: one apply writes its spec and status.
    status_subresource: ClassVar[bool] = True

    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: Any
    status: StatusBase | None = None

    @classmethod
    def singular(cls) -> str:
        return cls.kind.lower()

    @classmethod
    def crd_name(cls) -> str:
        return f"{cls.plural}.{GROUP}"
