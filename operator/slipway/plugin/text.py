"""Text primitives for the plugin's renderers: styles, trees, ages, numbers, and fitting lines to the terminal.

Renderers build lines from these and never touch a terminal themselves: whether colours and Unicode are
allowed is decided once, by the caller, and passed in as a Style. Every line a renderer returns goes through
fit(), which counts only visible characters (ANSI escapes are free) and cuts with an ellipsis, so the output
stays within `width` columns whatever the objects contain.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slipway.conditions import find, parse_time

WIDTH = 80
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "blue": "34", "cyan": "36"}
# What a word means for the eye: good news green, bad news red, waiting yellow.
_TONE = {
    **dict.fromkeys(("Healthy", "Promoted", "Succeeded", "Monitoring", "True", "Verified", "Ready"), "green"),
    **dict.fromkeys(("Regressed", "RolledBack", "Aborted", "Failed", "Drifting", "Stalled"), "red"),
    **dict.fromkeys(("Inconclusive", "Paused", "Pending", "Progressing", "Running", "Retraining"), "yellow"),
    **dict.fromkeys(("Suspended", "Unknown", "False"), "dim"),
}


@dataclass(frozen=True)
class Style:
    """How to decorate: ANSI colours (only on a TTY without NO_COLOR) and Unicode tree lines."""

    color: bool = False
    unicode: bool = True
    width: int = WIDTH

    def paint(self, text: str, *styles: str) -> str:
        if not self.color or not styles or not text:
            return text
        return f"\x1b[{';'.join(_CODES[s] for s in styles)}m{text}\x1b[0m"

    def tone(self, word: str | None) -> str:
        """A status word coloured by what it means; '-' for nothing."""
        if not word:
            return "-"
        return self.paint(word, _TONE[word]) if word in _TONE else word

    @property
    def branches(self) -> tuple[str, str, str, str]:
        """(middle child, last child, continuation under a middle child, under a last child)."""
        return ("├─ ", "└─ ", "│  ", "   ") if self.unicode else ("|- ", "`- ", "|  ", "   ")

    @property
    def ellipsis(self) -> str:
        return "…" if self.unicode else "~"


def visible_len(text: str) -> int:
    return len(_ANSI.sub("", text))


def clip(line: str, width: int, ellipsis: str = "…") -> str:
    """Cut `line` to `width` visible columns, keeping escapes intact and closing an open colour."""
    if visible_len(line) <= width:
        return line
    out, seen, i = [], 0, 0
    while i < len(line) and seen < width - len(ellipsis):
        match = _ANSI.match(line, i)
        if match:
            out.append(match.group())
            i = match.end()
            continue
        out.append(line[i])
        seen, i = seen + 1, i + 1
    text = "".join(out) + ellipsis
    return text + "\x1b[0m" if "\x1b[" in text else text


def fit(lines: Iterable[str], style: Style) -> list[str]:
    """The final pass over every rendering: within the width, and ASCII-only where Unicode is not wanted."""
    out = [clip(line.rstrip(), style.width, style.ellipsis) for line in lines]
    return out if style.unicode else [line.replace("…", style.ellipsis) for line in out]


@dataclass
class Node:
    """One line of a tree and its children; `extra` lines are wrapped continuations of `text`."""

    text: str
    children: list[Node]
    extra: list[str]

    def __init__(self, text: str, children: Iterable[Node] = (), extra: Iterable[str] = ()) -> None:
        self.text, self.children, self.extra = text, list(children), list(extra)


def tree(root: Node, style: Style) -> list[str]:
    lines = [root.text, *root.extra]
    lines.extend(_branches(root.children, "", style))
    return lines


def _branches(children: list[Node], prefix: str, style: Style) -> list[str]:
    mid, last, cont, blank = style.branches
    out: list[str] = []
    for i, child in enumerate(children):
        final = i == len(children) - 1
        out.append(prefix + (last if final else mid) + child.text)
        under = prefix + (blank if final else cont)
        out.extend(under + e for e in child.extra)
        out.extend(_branches(child.children, under, style))
    return out


def wrap(text: str, width: int, max_lines: int = 3) -> list[str]:
    """Word-wrap a message into at most `max_lines` lines of `width`; the last one says when text was cut."""
    lines = textwrap.wrap(" ".join(text.split()), max(width, 10)) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(width, 10) - 1].rstrip() + "…"
    return lines


def age(value: Any, now: datetime) -> str:
    """'35s', '4m', '3h', '2d' as kubectl shows ages (seconds up to 2 minutes); '-' for no or a bad time."""
    then = parse_time(value)
    if then is None:
        return "-"
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * 2:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def num(value: Any, digits: int = 3) -> str:
    """A number in few characters (ints stay ints); '-' when absent or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    if float(value).is_integer() and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.{digits}g}"


def count(value: Any) -> str:
    """A sample count: requests over a window come from rates, so they are rounded to whole requests."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return str(round(value))


def chunks(items: Iterable[str], width: int, max_lines: int = 3) -> list[str]:
    """Join items with two spaces, breaking lines only between items (a metric never loses its value)."""
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + 2 + len(item) <= width:
            lines[-1] += "  " + item
        else:
            lines.append(item)
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], lines[max_lines - 1] + " …"]
    return lines or [""]


def pct(value: Any, digits: int = 2) -> str:
    """A fraction as a percentage: 0.0312 -> '3.12%'."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return f"{value * 100:.{digits}f}%"


def pvalue(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return f"{value:.2g}" if value >= 0.001 else f"{value:.1e}"


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    """An object's condition of a type, {} when it has none (renderers read its fields with .get)."""
    return find((obj.get("status") or {}).get("conditions") or [], type_) or {}


def header(kind: str, obj: dict[str, Any], state: str | None, style: Style) -> str:
    """'Rollout default/cancer-rf   Progressing' with the state right-aligned when it fits."""
    meta = obj.get("metadata") or {}
    where = "/".join(p for p in (meta.get("namespace"), meta.get("name")) if p)
    right = style.tone(state) if state else style.paint("no status yet" if not obj.get("status") else "-", "dim")
    # A name too long for the line is cut, never the state: the state is what the header is for.
    left = clip(f"{style.paint(kind, 'bold')} {where}", style.width - visible_len(right) - 2, style.ellipsis)
    return f"{left}{' ' * (style.width - visible_len(left) - visible_len(right))}{right}"


def ready_line(obj: dict[str, Any], style: Style, width: int) -> Node:
    """The Ready condition and why, wrapped: the one line a person reads first when something is stuck."""
    ready = condition(obj, "Ready")
    stalled = condition(obj, "Stalled")
    if not ready:
        return Node("Ready  " + style.paint("no status yet (the operator has not reconciled it)", "dim"))
    text = f"{ready.get('reason', '')}: {ready.get('message', '')}".rstrip(": ")
    if stalled.get("status") == "True":
        mark = style.paint("Stalled", "red")
    else:
        mark = "Ready " + style.tone(ready.get("status") or "Unknown")
    first, *rest = wrap(text, width - 14, 2)
    generation = (obj.get("metadata") or {}).get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    stale = generation is not None and observed is not None and observed < generation
    suffix = style.paint(" (status is for an older spec)", "dim") if stale else ""
    return Node(f"{pad(mark, 12)}  {first}{suffix}", extra=[" " * 14 + r for r in rest])


def pad(text: str, width: int) -> str:
    """Left-justify by visible width, so coloured words line up with plain ones."""
    return text + " " * max(0, width - visible_len(text))
