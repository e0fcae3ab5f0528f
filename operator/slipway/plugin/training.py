"""Rendering a TrainingJob (attempts, pods, metrics, resulting ModelVersion) and a DriftMonitor.

Pure functions over API dicts; field names are the wire names of slipway.api.trainingjob and
slipway.api.driftmonitor.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from slipway import contract
from slipway.plugin.text import (
    Node,
    Style,
    age,
    chunks,
    condition,
    fit,
    header,
    num,
    pad,
    pvalue,
    ready_line,
    tree,
    wrap,
)

ATTEMPT_LABEL = contract.ATTEMPT  # set on every worker pod by the TrainingJob controller
TOP_FEATURES = 5


def size(n: Any) -> str:
    if isinstance(n, bool) or not isinstance(n, int):
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def attempt_of(pod: dict[str, Any]) -> int:
    try:
        return int(((pod.get("metadata") or {}).get("labels") or {}).get(ATTEMPT_LABEL, "0"))
    except ValueError:
        return 0


def pod_line(pod: dict[str, Any], style: Style) -> Node:
    """name, phase (or the container's waiting reason), node, exit code and the reason it gave."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    phase = "Terminating" if meta.get("deletionTimestamp") else status.get("phase") or "Pending"
    container = (status.get("containerStatuses") or [{}])[0] or {}
    state = container.get("state") or {}
    waiting, done = state.get("waiting") or {}, state.get("terminated") or {}
    shown = waiting.get("reason") if phase == "Pending" and waiting.get("reason") else phase
    node = (pod.get("spec") or {}).get("nodeName") or "-"
    exit_code = f"exit {done['exitCode']}" if isinstance(done.get("exitCode"), int) else ""
    restarts = container.get("restartCount") or 0
    tail = " ".join(p for p in (exit_code, f"restarts {restarts}" if restarts else "") if p)
    name = str(meta.get("name", "?"))
    line = f"{pad(name[:26], 27)}{pad(style.tone(shown), 18)}{pad(str(node)[:18], 19)}{tail}"
    why = done.get("reason") if done.get("reason") not in (None, "Completed") else None
    return Node(line, extra=[" " * 2 + why] if why and phase == "Failed" else [])


def attempts_text(obj: dict[str, Any], now: datetime) -> str:
    status, spec = obj.get("status") or {}, obj.get("spec") or {}
    limit = (spec.get("runPolicy") or {}).get("backoffLimit", 3)
    attempts, preemptions = status.get("attempts") or 0, status.get("preemptions") or 0
    # Restarts after a Kueue eviction use up no retry: the allowance grows with them.
    text = f"{pad('Attempts', 10)}{attempts} of {limit + 1 + preemptions} allowed"
    if preemptions:
        text += f" ({preemptions} after preemption)"
    if status.get("startTime"):
        text += f", started {age(status['startTime'], now)} ago"
    if status.get("completionTime"):
        text += f", finished {age(status['completionTime'], now)} ago"
    return text


def render_trainingjob(obj: dict[str, Any], pods: list[dict[str, Any]], now: datetime, style: Style) -> list[str]:
    """`kubectl slipway get trainingjob NAME`; `pods` are the job's pods (label slipway.dev/training-job)."""
    status, spec = obj.get("status") or {}, obj.get("spec") or {}
    gpus = (spec.get("resources") or {}).get("gpus") or 0
    workers = (spec.get("distributed") or {}).get("workers") or 1
    shape = f"{workers} worker(s)" + (f" x {gpus} GPU" if gpus else "")
    children = [
        Node(
            f"{pad('Model', 10)}{spec.get('modelName', '-')}  {spec.get('framework', '-')}  {shape}",
            extra=[" " * 10 + str(spec.get("algorithm", "-"))],
        ),
        ready_line(obj, style, style.width - 3),
        Node(attempts_text(obj, now)),
    ]
    current = max([status.get("attempts") or 0, *(attempt_of(p) for p in pods)])
    mine = sorted((p for p in pods if attempt_of(p) == current), key=lambda p: p["metadata"].get("name", ""))
    older = len(pods) - len(mine)
    if pods:
        note = [Node(style.paint(f"{older} pod(s) of earlier attempts", "dim"))] if older else []
        children.append(Node(f"Pods (attempt {current})", [pod_line(p, style) for p in mine] + note))
    elif status.get("phase") not in (None, "Pending"):
        children.append(Node(f"Pods      {style.paint('none (removed or not created)', 'dim')}"))
    metrics = status.get("metrics") or {}
    if metrics:
        first, *rest = chunks((f"{k} {num(v, 4)}" for k, v in sorted(metrics.items())), style.width - 13, 2)
        children.append(Node(f"{pad('Metrics', 10)}{first}", extra=[" " * 10 + r for r in rest]))
    ref = (status.get("modelVersionRef") or {}).get("name")
    if ref:
        art = status.get("artifact") or {}
        children.append(
            Node(
                f"{pad('Version', 10)}{style.paint(ref, 'green')}  {size(art.get('sizeBytes'))}",
                extra=[" " * 10 + str(art.get("uri", ""))] if art.get("uri") else [],
            )
        )
    return fit(tree(Node(header("TrainingJob", obj, status.get("phase"), style), children), style), style)


def target_text(obj: dict[str, Any]) -> str:
    spec = obj.get("spec") or {}
    if spec.get("rolloutRef"):
        return f"Rollout {spec['rolloutRef'].get('name', '?')}"
    if spec.get("inferenceServiceRef"):
        return f"InferenceService {spec['inferenceServiceRef'].get('name', '?')}"
    return "-"


def window_node(window: dict[str, Any], style: Style, now: datetime, label: str = "Last window") -> Node:
    drift = style.paint("drift", "red") if window.get("drift") else style.paint("no drift", "green")
    distance = f"  distance {num(window.get('distance'))}" if window.get("distance") is not None else ""
    head = (
        f"{pad(label, 14)}{age(window.get('time'), now)} ago  {num(window.get('samples'))} samples"
        f"  {drift}  p {pvalue(window.get('pValue'))}{distance}"
    )
    features = sorted(
        ((k, v) for k, v in (window.get("featurePValues") or {}).items() if isinstance(v, int | float)),
        key=lambda kv: kv[1],
    )
    children = [Node(f"{pad(name[:36], 37)}p {pvalue(p)}") for name, p in features[:TOP_FEATURES]]
    if len(features) > TOP_FEATURES:
        children.append(Node(style.paint(f"{len(features) - TOP_FEATURES} more feature(s)", "dim")))
    return Node(head, children)


def retrain_node(last: dict[str, Any], style: Style, now: datetime) -> Node:
    """The last retraining: its job, why, the version it registered and whether that went to the Rollout."""
    head = f"{pad('Last retrain', 14)}{last.get('jobName', '?')}, {age(last.get('time'), now)} ago"
    lines = [line for line in wrap(str(last.get("reason", "")), style.width - 20, 2) if line]
    if last.get("modelVersion"):
        proposed = ", proposed to the Rollout" if last.get("proposed") else ""
        lines.append(f"registered {style.paint(str(last['modelVersion']), 'cyan')}{proposed}")
    return Node(head, extra=[" " * 14 + line for line in lines])


def render_driftmonitor(obj: dict[str, Any], now: datetime, style: Style) -> list[str]:
    """`kubectl slipway get driftmonitor NAME`."""
    status, spec = obj.get("status") or {}, obj.get("spec") or {}
    detector, retrain = spec.get("detector") or {}, spec.get("retrain") or {}
    children = [
        Node(f"{pad('Target', 14)}{target_text(obj)}  version {status.get('modelVersion') or '-'}"),
        ready_line(obj, style, style.width - 3),
        Node(
            f"{pad('Detector', 14)}{detector.get('method', 'ks')}  p < {num(detector.get('pValue', 0.05))}"
            f" ({detector.get('correction', 'bonferroni')})  window {detector.get('windowSize', 1000)}"
        ),
    ]
    needed = retrain.get("consecutiveWindows", 2) if retrain and retrain.get("enabled", True) else None
    streak = status.get("consecutiveDriftWindows") or 0
    runs = f"{streak} drifted in a row" + (f" (retrain at {needed})" if needed else " (retraining off)")
    checked = f", checked {age(status['lastCheckTime'], now)} ago" if status.get("lastCheckTime") else ""
    children.append(Node(f"{pad('Windows', 14)}{status.get('windowsEvaluated') or 0} evaluated, {runs}{checked}"))
    drifted = condition(obj, "DriftDetected")
    if drifted:
        message = f"{drifted.get('reason', '')}: {drifted.get('message', '')}".rstrip(": ")
        first, *rest = wrap(message, style.width - 30, 2)
        children.append(
            Node(
                f"{pad('DriftDetected', 14)}{pad(style.tone(drifted.get('status')), 8)}{first}",
                extra=[" " * 22 + r for r in rest],
            )
        )
    if isinstance(status.get("lastWindow"), dict):
        children.append(window_node(status["lastWindow"], style, now))
    canary = status.get("lastCanaryWindow")
    if isinstance(canary, dict):  # canary traffic is judged apart from stable's
        node = window_node(canary, style, now, "Canary window")
        node.text += f"  ({canary.get('modelVersion') or '?'})"
        children.append(node)
    if isinstance(status.get("lastRetrain"), dict):
        children.append(retrain_node(status["lastRetrain"], style, now))
    return fit(tree(Node(header("DriftMonitor", obj, status.get("state"), style), children), style), style)
