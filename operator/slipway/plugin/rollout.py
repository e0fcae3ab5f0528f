"""Rendering a Rollout: versions and weights, the step, the last verdict with its evidence, the decisions.

Pure functions over the object as the API returns it (a dict), so they are tested on sample statuses
without a cluster. Field names are the wire names of slipway.api.rollout.RolloutStatus.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from slipway import contract
from slipway.plugin.text import Node, Style, age, count, fit, header, num, pad, pct, pvalue, ready_line, tree, wrap

RECENT = 5  # decisions shown by `get`; `history` shows them all
LABEL = 12  # width of the first column of the Rollout's lines
CANDIDATE = contract.CANDIDATE  # the version a DriftMonitor proposed (controllers/rollout.py)


def steps_of(obj: dict[str, Any]) -> list[dict[str, Any]]:
    canary = (obj.get("spec") or {}).get("canary") or {}
    return [s for s in canary.get("steps") or [] if isinstance(s, dict)]


def step_text(obj: dict[str, Any], now: datetime) -> str:
    """'step 1/3 at 10%, hold 60s (35s in)' or '… manual gate (waiting 2m)'."""
    status, steps = obj.get("status") or {}, steps_of(obj)
    index = status.get("currentStep")
    if not isinstance(index, int) or not steps:
        return ""
    step = steps[min(index, len(steps) - 1)]
    since = age(status.get("stepStartedAt"), now)
    if step.get("manualGate"):
        how = f"manual gate (waiting {since})"
    else:
        how = f"hold {step.get('holdSeconds') or 0}s ({since} in)"
    return f"step {index + 1}/{len(steps)} at {step.get('weight')}%, {how}"


def candidate(obj: dict[str, Any]) -> tuple[str, str]:
    """(version, proposer) when a DriftMonitor's retraining proposed the version being rolled out.

    status.candidate names the proposer (e.g. DriftMonitor/cancer-rf); the version is the slipway.dev/candidate
    annotation the proposer set (controllers/rollout.py), or the canary when the annotation is gone.
    """
    status = obj.get("status") or {}
    proposer = status.get("candidate")
    if not proposer:
        return "", ""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    version = annotations.get(CANDIDATE) or status.get("canaryVersion") or "?"
    return str(version), str(proposer)


def versions(obj: dict[str, Any], style: Style, now: datetime) -> list[Node]:
    status = obj.get("status") or {}
    stable, canary = status.get("stableVersion"), status.get("canaryVersion")
    weight = status.get("canaryWeight") or 0
    nodes = []
    if stable:
        share = 100 - weight if canary else 100
        nodes.append(Node(f"{pad('Stable', LABEL)}{pad(style.paint(stable, 'green'), 40)}{share:>4}%"))
    if canary:
        step = step_text(obj, now)
        nodes.append(
            Node(
                f"{pad('Canary', LABEL)}{pad(style.paint(canary, 'yellow'), 40)}{weight:>4}%",
                [Node(step)] if step else [],
            )
        )
    target = ((obj.get("spec") or {}).get("modelVersionRef") or {}).get("name")
    if target and target not in (stable, canary):
        nodes.append(Node(f"{pad('Target', LABEL)}{target} (spec.modelVersionRef)"))
    if status.get("rolledBackVersion"):
        nodes.append(
            Node(
                f"{pad('Rolled back', LABEL)}{style.paint(status['rolledBackVersion'], 'red')}"
                " (annotate slipway.dev/retry to try again)"
            )
        )
    name, proposer = candidate(obj)
    if name:
        nodes.append(Node(f"{pad('Candidate', LABEL)}{style.paint(name, 'cyan')} proposed by {proposer}"))
    if status.get("driftMonitor"):
        nodes.append(Node(f"{pad('Inputs', LABEL)}logged to DriftMonitor {status['driftMonitor']}"))
    return nodes


def evidence_lines(item: dict[str, Any], style: Style) -> Node:
    """One metric's verdict and the numbers behind it, in two lines at most."""
    metric, verdict = str(item.get("metric", "?")), item.get("verdict")
    canary, stable = item.get("canary") or {}, item.get("stable") or {}
    head = f"{pad(metric[:14], 14)} {pad(style.tone(verdict), 12)} "
    cn, sn = count(canary.get("samples")), count(stable.get("samples"))
    if metric == "errorRate":
        first = f"canary {pct(canary.get('value'))} n={cn}  stable {pct(stable.get('value'))} n={sn}"
        interval = item.get("interval") or []
        ci = f"[{pct(interval[0])}, {pct(interval[1])}]" if len(interval) == 2 else "-"
        second = f"effect {pct(item.get('effect'))}  CI {ci}  p {pvalue(item.get('pValue'))}"
        # What the verdict was judged against, on a line of its own: the terminal is 80 columns.
        third = [f"margin {pct(item['margin'])}  alpha {num(item.get('alpha'))}"] if isinstance(
            item.get("margin"), int | float) else []  # fmt: skip
        return Node(head + first, extra=[" " * 28 + line for line in [second, *third]])
    if metric.startswith("latency"):
        ms = [
            f"{v * 1000:.3g}ms" if isinstance(v, int | float) else "-"
            for v in (canary.get("value"), stable.get("value"))
        ]
        second = f"ratio {num(item.get('effect'))}"
        if isinstance(item.get("margin"), int | float):
            second += f"  max {num(item['margin'])}x  alpha {num(item.get('alpha'))}"
        return Node(head + f"canary {ms[0]} n={cn}  stable {ms[1]} n={sn}", extra=[" " * 28 + second])
    return Node(head + f"value {num(canary.get('value'))}")


def last_verdict(obj: dict[str, Any], style: Style, now: datetime) -> Node | None:
    status = obj.get("status") or {}
    verdict = status.get("lastVerdict")
    judged = [d for d in status.get("decisions") or [] if isinstance(d, dict) and d.get("evidence")]
    if not verdict and not judged:
        return None
    when = f" (analysed {age(status.get('lastAnalysisTime'), now)} ago)" if status.get("lastAnalysisTime") else ""
    node = Node(f"{pad('Verdict', LABEL)}{style.tone(verdict)}{when}")
    # The latest look's evidence; an operator older than lastEvidence left only the last decision's.
    latest = status.get("lastEvidence") if isinstance(status.get("lastEvidence"), list) else None
    evidence = latest if latest is not None else (judged[-1]["evidence"] if judged else [])
    node.children = [evidence_lines(e, style) for e in evidence if isinstance(e, dict)]
    return node


def decision_node(d: dict[str, Any], style: Style, now: datetime, width: int, evidence: bool) -> Node:
    """A decision's age (its UTC clock time in history), action, step, weight, verdict and message."""
    where = f"step {d['step'] + 1}" if isinstance(d.get("step"), int) else ""
    # A weight means something only inside a canary (it is 0 for a first deploy).
    weight = f"{d['weight']}%" if isinstance(d.get("weight"), int) and where else ""
    action = d.get("action", "?")
    tone = "red" if action in ("Rollback", "Abort") else "green" if action == "Promote" else "bold"
    when = str(d.get("time", ""))[11:19] if evidence else age(d.get("time"), now)
    head = f"{when:>4}  {pad(style.paint(str(action), tone), 14)}{where:<8}{weight:>4}"
    verdict = d.get("verdict")
    if verdict:
        head += "  " + style.tone(verdict)
    children = [evidence_lines(e, style) for e in d.get("evidence") or [] if isinstance(e, dict)] if evidence else []
    indent = max(len(when), 4) + 2
    lines = wrap(str(d.get("message", "")), width - indent, 3 if evidence else 1)
    return Node(head, children, extra=[" " * indent + line for line in lines if line])


def render_rollout(obj: dict[str, Any], now: datetime, style: Style) -> list[str]:
    """`kubectl slipway get rollout NAME`."""
    status = obj.get("status") or {}
    children = versions(obj, style, now)
    children.append(ready_line(obj, style, style.width - 3))
    verdict = last_verdict(obj, style, now)
    if verdict is not None:
        children.append(verdict)
    decisions = [d for d in status.get("decisions") or [] if isinstance(d, dict)]
    if decisions:
        name = (obj.get("metadata") or {}).get("name", "")
        shown = decisions[-RECENT:]
        title = f"Decisions ({len(shown)} of {len(decisions)}; all: kubectl slipway history {name})"
        children.append(Node(title, [decision_node(d, style, now, style.width - 6, False) for d in shown]))
    return fit(tree(Node(header("Rollout", obj, status.get("phase"), style), children), style), style)


def render_history(
    obj: dict[str, Any], now: datetime, style: Style, records: list[dict[str, Any]] | None = None
) -> list[str]:
    """`kubectl slipway history NAME`, oldest first, with evidence: each canary's record (CanaryAnalysis: all of
    its decisions) as one node, and the decisions in the Rollout's status that no record holds (a first deploy,
    a retry, or a canary from before records were kept)."""
    status = obj.get("status") or {}
    width = style.width - 6
    canaries = sorted((r for r in records or [] if isinstance(r, dict)), key=lambda r: str(started(r)))
    held = {(d.get("time"), d.get("action")) for r in canaries for d in recorded(r)}
    timeline: list[tuple[str, Node]] = [(str(started(r)), canary_node(r, style, now, width)) for r in canaries]
    for d in status.get("decisions") or []:
        if isinstance(d, dict) and (d.get("time"), d.get("action")) not in held:
            timeline.append((str(d.get("time", "")), decision_node(d, style, now, width, True)))
    timeline.sort(key=lambda item: item[0])
    children = [node for _, node in timeline] or [Node(style.paint("no decisions yet", "dim"))]
    return fit(tree(Node(header("Rollout", obj, status.get("phase"), style), children), style), style)


def started(record: dict[str, Any]) -> Any:
    return (record.get("spec") or {}).get("startedAt", "")


def recorded(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in (record.get("status") or {}).get("decisions") or [] if isinstance(d, dict)]


def canary_node(record: dict[str, Any], style: Style, now: datetime, width: int) -> Node:
    """One canary: its versions, start, end, and every decision on it."""
    spec, status = record.get("spec") or {}, record.get("status") or {}
    phase = str(status.get("phase", "Running"))
    tone = "red" if phase in ("RolledBack", "Aborted") else "green" if phase == "Promoted" else "bold"
    when = str(spec.get("startedAt", ""))
    title = f"Canary {spec.get('canaryVersion', '?')} vs {spec.get('stableVersion', '?')}  {when[:10]} {when[11:19]}"
    title += f"  {style.paint(phase, tone)}"
    decisions = recorded(record)
    dropped = status.get("decisionsDropped")
    children = [decision_node(d, style, now, width - 3, True) for d in decisions]
    if isinstance(dropped, int) and dropped > 0:
        children.insert(0, Node(style.paint(f"{dropped} older decision(s) not kept", "dim")))
    name = (record.get("metadata") or {}).get("name", "")
    return Node(title, children, extra=[style.paint(f"CanaryAnalysis {name}", "dim")])
