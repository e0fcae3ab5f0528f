"""The tabular MLP for framework pytorch: its hyperparameters and the modules that get saved.

The saved TorchScript module takes raw feature values (float32 or float64, columns in signature order): the
standardization fitted on the training split lives inside it as buffers, so a server needs no separate scaler.
"""

# No `from __future__ import annotations` here: TorchScript reads the buffer annotations below at run time and
# does not understand them as strings.
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from slipway_trainer.errors import InvalidInput


@dataclass(frozen=True)
class MlpParams:
    hidden_layers: tuple[int, ...] = (64, 64)
    epochs: int = 50
    batch_size: int = 64  # per process: a gang of N processes steps on N * batch_size rows
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    dropout: float = 0.0

    @classmethod
    def from_hyperparameters(cls, hp: dict[str, Any]) -> "MlpParams":
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(hp) - set(names))
        if unknown:
            raise InvalidInput(f"mlp has no hyperparameter(s) {', '.join(unknown)}; it accepts {', '.join(names)}")
        values: dict[str, Any] = {}
        if "hidden_layers" in hp:
            layers = hp["hidden_layers"]
            if not isinstance(layers, list) or len(layers) > 32 or not all(_is_int(w, 1, 65536) for w in layers):
                raise InvalidInput(f"hidden_layers must be a list of up to 32 widths in [1, 65536], got {layers!r}")
            values["hidden_layers"] = tuple(layers)
        for name, lo, hi in (("epochs", 1, 100_000), ("batch_size", 1, 1 << 20)):
            if name in hp:
                if not _is_int(hp[name], lo, hi):
                    raise InvalidInput(f"{name} must be an integer in [{lo}, {hi}], got {hp[name]!r}")
                values[name] = hp[name]
        for name, flo, fhi, low_open in (("learning_rate", 0.0, 10.0, True), ("weight_decay", 0.0, 1.0, False)):
            if name in hp:
                values[name] = _float(name, hp[name], flo, fhi, low_open)
        if "dropout" in hp:
            values["dropout"] = _float("dropout", hp["dropout"], 0.0, 0.99, False)
        return cls(**values)


def _is_int(v: Any, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _float(name: str, v: Any, lo: float, hi: float, low_open: bool) -> float:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and (lo < v if low_open else lo <= v) and v <= hi
    if not ok:
        raise InvalidInput(f"{name} must be a number in {'(' if low_open else '['}{lo}, {hi}], got {v!r}")
    return float(v)


class TabularMLP(nn.Module):
    """Standardize with the carried statistics, then Linear-ReLU(-Dropout) blocks and a linear output."""

    x_mean: torch.Tensor
    x_std: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, params: MlpParams, n_outputs: int) -> None:
        super().__init__()
        self.register_buffer("x_mean", mean.to(torch.float32))
        self.register_buffer("x_std", std.to(torch.float32))
        layers: list[nn.Module] = []
        width = int(mean.shape[0])
        for h in params.hidden_layers:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if params.dropout > 0:
                layers.append(nn.Dropout(params.dropout))
            width = h
        layers.append(nn.Linear(width, n_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net((x - self.x_mean) / self.x_std)
        return out


class Classifier(nn.Module):
    """Saved for classification: raw features [N, F] -> class probabilities [N, C], columns in the order of
    the manifest's `classes`."""

    def __init__(self, core: TabularMLP) -> None:
        super().__init__()
        self.core = core

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.core(x.to(torch.float32)), dim=1)


class Regressor(nn.Module):
    """Saved for regression: raw features [N, F] -> predictions [N] in the target's units (the network learns
    a standardized target; its mean and std are carried here)."""

    y_mean: torch.Tensor
    y_std: torch.Tensor

    def __init__(self, core: TabularMLP, y_mean: float, y_std: float) -> None:
        super().__init__()
        self.core = core
        self.register_buffer("y_mean", torch.tensor(y_mean, dtype=torch.float32))
        self.register_buffer("y_std", torch.tensor(y_std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.core(x.to(torch.float32))
        return out.squeeze(1) * self.y_std + self.y_mean
