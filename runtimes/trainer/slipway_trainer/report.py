"""What the trainer tells the world: JSON progress lines on stdout and the pod's termination message."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

DEFAULT_TERMINATION_LOG = "/dev/termination-log"
# The kubelet keeps at most 4096 bytes of a termination message; stay under it with room for the JSON around.
MAX_MESSAGE_CHARS = 3000


class Progress:
    """One JSON object per line. Each line is a single write and flush, so lines from the processes of a
    torchrun gang, which share the pod's stdout, never interleave within a line."""

    def __init__(self, stream: TextIO, rank: int = 0, world_size: int = 1) -> None:
        self.stream, self.rank, self.world_size = stream, rank, world_size
        self.started = time.monotonic()

    def emit(self, event: str, **fields: Any) -> None:
        record: dict[str, Any] = {"event": event, **fields}
        if self.world_size > 1:
            record["rank"] = self.rank
        record["elapsed"] = round(time.monotonic() - self.started, 3)
        self.stream.write(json.dumps(_finite(record), separators=(",", ":"), default=str) + "\n")
        self.stream.flush()


def _finite(value: Any) -> Any:
    """NaN and infinities are not JSON; a diverged loss is reported as null rather than breaking the line."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def termination_log_path() -> Path:
    return Path(os.environ.get("SLIPWAY_TERMINATION_LOG", DEFAULT_TERMINATION_LOG))


def write_termination_message(payload: dict[str, Any], overwrite: bool = True) -> None:
    """Best effort: outside a pod the default path is usually not writable, and that must not fail the run.
    With overwrite=False an existing message is kept: in a pod running several torchrun processes, the first
    failure is the cause, and the peers that fail after it ("connection closed by peer") must not hide it."""
    if isinstance(payload.get("message"), str) and len(payload["message"]) > MAX_MESSAGE_CHARS:
        payload = {**payload, "message": payload["message"][: MAX_MESSAGE_CHARS - 3] + "..."}
    path = termination_log_path()
    try:
        if not overwrite and path.exists() and path.stat().st_size > 0:
            return
        path.write_text(json.dumps(payload, separators=(",", ":")))
    except OSError as e:
        print(f"slipway-trainer: cannot write termination message to {path}: {e.strerror}", file=sys.stderr)
