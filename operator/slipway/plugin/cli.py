"""`kubectl slipway`: get (with --watch), promote, abort, retry, history.

Commands read objects through client.Client and print what the pure renderers return. Errors a person can
act on (not found, no cluster, nothing to promote) are one line on stderr and exit status 1, never a
traceback.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from slipway import contract
from slipway.plugin.client import Client, ClientError
from slipway.plugin.rollout import render_history, render_rollout
from slipway.plugin.text import WIDTH, Style
from slipway.plugin.training import render_driftmonitor, render_trainingjob

KINDS = {
    **dict.fromkeys(("rollout", "rollouts", "mro"), "rollout"),
    **dict.fromkeys(("trainingjob", "trainingjobs", "tj"), "trainingjob"),
    **dict.fromkeys(("driftmonitor", "driftmonitors", "dm"), "driftmonitor"),
}
JOB_LABEL = contract.TRAINING_JOB
# annotation -> the status field where the operator remembers the last value it acted on (controllers/rollout.py)
ACTIONS = {
    "promote": (contract.PROMOTE, "promoteToken"),
    "abort": (contract.ABORT, "abortToken"),
    "retry": (contract.RETRY, "retryToken"),
}
POLL_SECONDS = 1.0
CLEAR = "\x1b[H\x1b[2J"


def style_for(stream: TextIO) -> Style:
    """Colours only on a terminal and without NO_COLOR (no-color.org); Unicode only if the stream can encode it."""
    tty = stream.isatty()
    color = tty and not os.environ.get("NO_COLOR")
    unicode = "utf" in (getattr(stream, "encoding", "") or "").lower()
    width = min(WIDTH, shutil.get_terminal_size((WIDTH, 24)).columns) if tty else WIDTH
    return Style(color=color, unicode=unicode, width=max(width, 40))


class Frame:
    """Fetches what one kind's view needs and renders it; `version` changes exactly when the objects do."""

    def __init__(self, client: Client, kind: str, name: str, history: bool = False) -> None:
        self.client, self.kind, self.name, self.history = client, kind, name, history

    def fetch(self) -> tuple[str, Callable[[datetime, Style], list[str]]]:
        obj = self.client.get(self.kind, self.name)
        version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        if self.kind == "trainingjob":
            pods = self.client.pods(f"{JOB_LABEL}={self.name}")
            version += "/" + ",".join(str(p["metadata"].get("resourceVersion")) for p in pods)
            return version, lambda now, style: render_trainingjob(obj, pods, now, style)
        if self.kind == "driftmonitor":
            return version, lambda now, style: render_driftmonitor(obj, now, style)
        if self.history:
            records = self.client.records(self.name)
            version += "/" + ",".join(str(r["metadata"].get("resourceVersion")) for r in records)
            return version, lambda now, style: render_history(obj, now, style, records)
        return version, lambda now, style: render_rollout(obj, now, style)


def now() -> datetime:
    return datetime.now(UTC)


def show(frame: Frame, out: TextIO) -> None:
    _, render = frame.fetch()
    out.write("\n".join(render(now(), style_for(out))) + "\n")


def watch(frame: Frame, out: TextIO, interval: float = POLL_SECONDS) -> None:
    """Poll every `interval` seconds. On a terminal redraw in place (ages tick); otherwise append a frame,
    separated by a blank line, only when the objects changed, so a log of it reads as a history."""
    style, last = style_for(out), None
    while True:
        version, render = frame.fetch()
        if out.isatty():
            out.write(CLEAR + "\n".join(render(now(), style)) + "\n")
            out.flush()
        elif version != last:
            out.write(("\n" if last is not None else "") + "\n".join(render(now(), style)) + "\n")
            out.flush()
        last = version
        time.sleep(interval)


def act(client: Client, action: str, name: str, wait: float, out: TextIO) -> None:
    """Set the annotation to a fresh token; the operator acts once per new value and records it in status."""
    annotation, field = ACTIONS[action]
    status = client.get("rollout", name).get("status") or {}
    refuse = refusal(action, status)
    if refuse:
        raise ClientError(f"rollout {name}: {refuse}")
    token = f"{now().strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
    client.annotate("rollout", name, annotation, token)
    out.write(f"rollout {name}: {annotation}={token} set\n")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        status = client.get("rollout", name).get("status") or {}
        if status.get(field) == token:
            out.write(f"rollout {name}: the operator acted on it (phase {status.get('phase', '-')})\n")
            return
        time.sleep(0.5)
    if wait > 0:
        out.write(f"rollout {name}: not acted on within {wait:.0f}s; is the operator running?\n")


def refusal(action: str, status: dict[str, Any]) -> str:
    """Why an action makes no sense now. Refusing matters: the operator consumes a new token the next time
    the action applies, so a promote or abort set while no canary runs would hit the *next* canary."""
    canary, phase = status.get("canaryVersion"), status.get("phase")
    if action in ("promote", "abort") and not (canary and phase in ("Progressing", "Paused")):
        return f"no canary in progress (phase {phase or '-'}): nothing to {action}"
    if action == "retry" and not status.get("rolledBackVersion"):
        return "no rolled-back version to retry"
    return ""


def connection_flags(parser: argparse.ArgumentParser, default: Any) -> argparse.ArgumentParser:
    parser.add_argument("-n", "--namespace", default=default, help="namespace (default: the context's)")
    parser.add_argument("--kubeconfig", default=default, help="kubeconfig file (default: $KUBECONFIG)")
    parser.add_argument("--context", default=default, help="kubeconfig context")
    return parser


def parser() -> argparse.ArgumentParser:
    # Accepted before or after the command; SUPPRESS keeps a command's unset flag from erasing one given before.
    common = connection_flags(argparse.ArgumentParser(add_help=False), argparse.SUPPRESS)
    p = argparse.ArgumentParser(prog="kubectl slipway", description="Inspect and steer slipway resources.")
    connection_flags(p, None)
    sub = p.add_subparsers(dest="command", required=True)
    get = sub.add_parser("get", parents=[common], help="show a rollout, trainingjob or driftmonitor as a tree")
    get.add_argument("kind", choices=sorted(KINDS), metavar="KIND", help="rollout | trainingjob | driftmonitor")
    get.add_argument("name")
    get.add_argument("-w", "--watch", action="store_true", help="re-render on every change")
    for action, what in (
        ("promote", "skip the rest of the current step (a manual gate, or a hold)"),
        ("abort", "roll the canary back now"),
        ("retry", "try a rolled-back version again"),
    ):
        a = sub.add_parser(action, parents=[common], help=f"rollout: {what}")
        a.add_argument("name")
        a.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the operator (0: don't)")
    h = sub.add_parser("history", parents=[common], help="a rollout's decisions with their evidence")
    h.add_argument("name")
    h.add_argument("-w", "--watch", action="store_true", help="re-render on every change")
    return p


def run(args: argparse.Namespace, out: TextIO) -> None:
    client = Client(args.kubeconfig, args.context, args.namespace)
    if args.command in ACTIONS:
        act(client, args.command, args.name, args.wait, out)
        return
    kind = "rollout" if args.command == "history" else KINDS[args.kind]
    frame = Frame(client, kind, args.name, history=args.command == "history")
    if args.watch:
        watch(frame, out)
    else:
        show(frame, out)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        run(args, sys.stdout)
    except ClientError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130 if not getattr(args, "watch", False) else 0
    except BrokenPipeError:  # `kubectl slipway history x | head`
        return 0
    return 0
