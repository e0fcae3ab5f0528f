"""kubectl-slipway's renderers and command logic on sample objects, in every state the operator writes.

Every rendering must fit 80 columns and carry no ANSI escape unless colours were asked for; the client is
replaced by a fake so the commands' logic (refusals, tokens, watch frames) is tested without a cluster.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slipway.plugin import cli
from slipway.plugin.client import ClientError, NotFound, error_from
from slipway.plugin.rollout import render_history, render_rollout
from slipway.plugin.text import Style, clip, visible_len
from slipway.plugin.training import render_driftmonitor, render_trainingjob

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
PLAIN = Style(color=False)
COLOR = Style(color=True)
ANSI = re.compile(r"\x1b\[")
LONG = "a very long message that goes on " * 12


def ts(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def conds(ready: str, reason: str, message: str = "", stalled: bool = False) -> list[dict[str, Any]]:
    return [
        {"type": "Ready", "status": ready, "reason": reason, "message": message},
        {"type": "Stalled", "status": "True" if stalled else "False", "reason": reason, "message": message},
    ]


def obj(kind: str, name: str, spec: dict[str, Any], status: dict[str, Any] | None) -> dict[str, Any]:
    doc = {"kind": kind, "metadata": {"name": name, "namespace": "ml", "generation": 1, "resourceVersion": "7"}}
    return doc | {"spec": spec} | ({"status": status} if status is not None else {})


STEPS = {"canary": {"steps": [{"weight": 10, "holdSeconds": 60}, {"weight": 50, "manualGate": True}]}}
ROLLOUT_SPEC = {"modelVersionRef": {"name": "cancer-rf-v2"}} | STEPS
ERROR_EVIDENCE = {
    "metric": "errorRate", "verdict": "Regressed", "canary": {"samples": 412.0, "value": 0.31},
    "stable": {"samples": 3710.5, "value": 0.004}, "effect": 0.306, "interval": [0.21, 0.4], "pValue": 0.00001,
}  # fmt: skip
LATENCY_EVIDENCE = {
    "metric": "latencyP95", "verdict": "Healthy", "canary": {"samples": 412.0, "value": 0.0123},
    "stable": {"samples": 3710.5, "value": 0.0118}, "effect": 1.04,
}  # fmt: skip
CUSTOM_EVIDENCE = {"metric": "business-kpi", "verdict": "Inconclusive", "canary": {"samples": 0}, "stable": {}}


def decision(action: str, seconds_ago: float, **extra: Any) -> dict[str, Any]:
    return {"time": ts(seconds_ago), "action": action, "message": f"{action} happened"} | extra


def rollout(status: dict[str, Any] | None, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return obj("Rollout", "cancer-rf", spec or ROLLOUT_SPEC, status)


ROLLOUTS = {
    "no status yet": rollout(None),
    "first version": rollout({"phase": "Promoted", "stableVersion": "cancer-rf-v1", "canaryWeight": 0,
                              "conditions": conds("True", "Serving", "cancer-rf-v1 takes all traffic"),
                              "decisions": [decision("Deploy", 600)]}),
    "progressing": rollout({
        "phase": "Progressing", "stableVersion": "cancer-rf-v1", "canaryVersion": "cancer-rf-v2", "currentStep": 0,
        "canaryWeight": 10, "stepStartedAt": ts(35), "lastVerdict": "Healthy", "lastAnalysisTime": ts(2),
        "conditions": conds("False", "CanaryProgressing", "step 1/2 at 10%: 25s of hold left; verdict Healthy"),
        "decisions": [decision("Deploy", 900), decision("CanaryStarted", 35, step=0, weight=10),
                      decision("Analysis", 20, step=0, weight=10, verdict="Healthy",
                               evidence=[ERROR_EVIDENCE | {"verdict": "Healthy"}, LATENCY_EVIDENCE])],
    }),
    "paused at a manual gate": rollout({
        "phase": "Paused", "stableVersion": "cancer-rf-v1", "canaryVersion": "cancer-rf-v2", "currentStep": 1,
        "canaryWeight": 50, "stepStartedAt": ts(200), "lastVerdict": "Inconclusive",
        "conditions": conds("False", "Paused", "step 2/2 at 50%: waiting for slipway.dev/promote"),
        "decisions": [decision("Advance", 200, step=1, weight=50, message=LONG)],
    }),
    "rolled back": rollout({
        "phase": "RolledBack", "stableVersion": "cancer-rf-v1", "rolledBackVersion": "cancer-rf-v2",
        "canaryWeight": 0, "lastVerdict": "Regressed",
        "conditions": conds("False", "RolledBack", LONG, stalled=True),
        "decisions": [decision("Rollback", 5, step=0, weight=10, verdict="Regressed", message=LONG,
                               evidence=[ERROR_EVIDENCE, LATENCY_EVIDENCE, CUSTOM_EVIDENCE])],
    }),
    "aborted, stale status": rollout({
        "phase": "Aborted", "stableVersion": "cancer-rf-v1", "rolledBackVersion": "cancer-rf-v2",
        "observedGeneration": 0, "conditions": conds("False", "Aborted", "aborted by hand", stalled=True),
        "decisions": [decision("Abort", 5)] * 20,
    }),
    "candidate from drift": rollout({
        "phase": "Progressing", "stableVersion": "cancer-rf-v1", "canaryVersion": "cancer-rf-v7", "canaryWeight": 10,
        "currentStep": 0, "candidate": "DriftMonitor/cancer-rf", "driftMonitor": "cancer-rf",
        "conditions": conds("False", "CanaryProgressing"),
    }) | {"metadata": {"name": "cancer-rf", "namespace": "ml", "annotations": {
        "slipway.dev/candidate": "cancer-rf-v7", "slipway.dev/candidate-base": "cancer-rf-v2"}}},
    "candidate without its annotation": rollout({"phase": "Progressing", "stableVersion": "v1",
                                                 "canaryVersion": "v8", "candidate": "DriftMonitor/x"}),
    "a name longer than the screen": obj("Rollout", "x" * 120, ROLLOUT_SPEC, {"phase": "Pending"}),
}  # fmt: skip


def pod(name: str, phase: str, attempt: int, exit_code: int | None = None, reason: str = "") -> dict[str, Any]:
    state: dict[str, Any] = {"running": {}} if phase == "Running" else {}
    if exit_code is not None:
        state = {"terminated": {"exitCode": exit_code, "reason": reason or "Error"}}
    if phase == "Pending" and reason:
        state = {"waiting": {"reason": reason}}
    return {
        "metadata": {"name": name, "labels": {"slipway.dev/attempt": str(attempt)}, "resourceVersion": "3"},
        "spec": {"nodeName": "gpu-node-a100-0"},
        "status": {"phase": phase, "containerStatuses": [{"state": state, "restartCount": 0}]},
    }


JOB_SPEC = {"modelName": "cancer-rf", "framework": "pytorch", "algorithm": "mlp", "runPolicy": {"backoffLimit": 2},
            "resources": {"gpus": 1}, "distributed": {"workers": 2}}  # fmt: skip
JOBS: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {
    "no status yet": (obj("TrainingJob", "train-1", JOB_SPEC, None), []),
    "pending, image pull": (
        obj("TrainingJob", "train-1", JOB_SPEC, {"phase": "Pending", "attempts": 1, "startTime": ts(30),
            "conditions": conds("False", "ImagePullBackOff", LONG)}),
        [pod("train-1-a1-0", "Pending", 1, reason="ImagePullBackOff")],
    ),
    "running, second attempt": (
        obj("TrainingJob", "train-1", JOB_SPEC, {"phase": "Running", "attempts": 2, "startTime": ts(400),
            "conditions": conds("False", "Running", "attempt 2: 2/2 worker(s) running")}),
        [pod("train-1-a1-0", "Failed", 1, 137, "OOMKilled"), pod("train-1-a2-0", "Running", 2),
         pod("train-1-a2-1", "Running", 2)],
    ),
    "failed": (
        obj("TrainingJob", "train-1", JOB_SPEC, {"phase": "Failed", "attempts": 1, "completionTime": ts(3),
            "conditions": conds("False", "InvalidInput", "worker failed (exit code 65)", stalled=True)}),
        [pod("train-1-a1-0", "Failed", 1, 65, "InvalidInput")],
    ),
    "succeeded": (
        obj("TrainingJob", "train-1", JOB_SPEC, {
            "phase": "Succeeded", "attempts": 1, "startTime": ts(7200), "completionTime": ts(3600),
            "metrics": {"accuracy": 0.9736842, "f1": 0.97, "roc_auc": 0.99, "log_loss": 0.0812, "train_seconds": 3.2},
            "artifact": {"uri": "s3://models/cancer-rf/" + "x" * 80 + "/model.joblib", "sha256": "ab" * 32,
                         "sizeBytes": 1234567},
            "modelVersionRef": {"name": "cancer-rf-v3"},
            "conditions": conds("True", "Succeeded", "trained in 1 attempt(s); registered ModelVersion cancer-rf-v3"),
        }),
        [pod("train-1-a1-0", "Succeeded", 1, 0, "Completed"), pod("train-1-a1-1", "Succeeded", 1, 0, "Completed")],
    ),
    "suspended": (
        obj("TrainingJob", "train-1", JOB_SPEC, {"phase": "Suspended", "attempts": 1,
            "conditions": conds("False", "Suspended", "runPolicy.suspend is true")}),
        [],
    ),
}  # fmt: skip

DM_SPEC = {"rolloutRef": {"name": "cancer-rf"}, "detector": {"method": "ks", "pValue": 0.05, "windowSize": 500},
           "retrain": {"consecutiveWindows": 2, "template": {}}}  # fmt: skip
FEATURES = {f"feature number {i} with a long name": 0.9 / (i + 1) for i in range(30)}
MONITORS = {
    "no status yet": obj("DriftMonitor", "cancer-rf", DM_SPEC, None),
    "pending": obj("DriftMonitor", "cancer-rf", DM_SPEC, {"state": "Pending", "conditions": [
        *conds("False", "Pending", "waiting to attach the detector"), {"type": "DriftDetected", "status": "Unknown",
        "reason": "NoWindowYet", "message": "no window has been evaluated"}]}),
    "monitoring": obj("DriftMonitor", "cancer-rf", DM_SPEC, {
        "state": "Monitoring", "modelVersion": "cancer-rf-v1", "windowsEvaluated": 12, "lastCheckTime": ts(4),
        "lastWindow": {"time": ts(4), "samples": 500, "drift": False, "pValue": 0.41,
                       "featurePValues": {"mean radius": 0.41, "mean texture": 0.77}},
        "conditions": conds("True", "Monitoring")}),
    "drifting": obj("DriftMonitor", "cancer-rf", DM_SPEC, {
        "state": "Drifting", "modelVersion": "cancer-rf-v1", "windowsEvaluated": 40, "consecutiveDriftWindows": 1,
        "lastWindow": {"time": ts(1), "samples": 500, "drift": True, "pValue": 1e-9, "distance": 0.4123,
                       "featurePValues": FEATURES},
        "conditions": [*conds("True", "Monitoring"), {"type": "DriftDetected", "status": "True",
                                                     "reason": "DriftDetected", "message": LONG}]}),
    "retraining": obj("DriftMonitor", "cancer-rf", DM_SPEC | {"retrain": None}, {
        "state": "Retraining", "consecutiveDriftWindows": 2, "windowsEvaluated": 41,
        "lastRetrain": {"jobName": "cancer-rf-drift-20261122", "time": ts(60), "reason": LONG}}),
    "canary window and a proposed version": obj("DriftMonitor", "cancer-rf", DM_SPEC, {
        "state": "Monitoring", "modelVersion": "cancer-rf-v1", "windowsEvaluated": 3,
        "lastWindow": {"time": ts(4), "samples": 500, "drift": False, "pValue": 0.41},
        "lastCanaryWindow": {"time": ts(2), "modelVersion": "cancer-rf-v2", "samples": 50, "drift": True,
                             "pValue": 0.0001},
        "lastRetrain": {"jobName": "cancer-rf-drift-9", "time": ts(600), "reason": "2 drifted windows",
                        "modelVersion": "cancer-rf-v2", "proposed": True},
        "conditions": conds("True", "Monitoring")}),
}  # fmt: skip

RENDERINGS = (
    [(f"rollout {k}", lambda s, o=o: render_rollout(o, NOW, s)) for k, o in ROLLOUTS.items()]
    + [(f"history {k}", lambda s, o=o: render_history(o, NOW, s)) for k, o in ROLLOUTS.items()]
    + [(f"job {k}", lambda s, j=j: render_trainingjob(j[0], j[1], NOW, s)) for k, j in JOBS.items()]
    + [(f"monitor {k}", lambda s, o=o: render_driftmonitor(o, NOW, s)) for k, o in MONITORS.items()]
)


@pytest.mark.parametrize(("case", "render"), RENDERINGS, ids=[c for c, _ in RENDERINGS])
def test_every_state_fits_80_columns_and_is_plain_without_colour(case: str, render: Any) -> None:
    plain = render(PLAIN)
    assert plain, case
    assert all(len(line) <= 80 for line in plain), "\n".join(plain)
    assert not any(ANSI.search(line) for line in plain)
    coloured = render(COLOR)
    assert all(visible_len(line) <= 80 for line in coloured)
    assert [ANSI.sub("", re.sub(r"\x1b\[[0-9;]*m", "", line)) for line in coloured] == plain


def text(lines: list[str]) -> str:
    return "\n".join(lines)


def test_the_verdict_shows_the_latest_looks_evidence_not_the_last_decisions() -> None:
    latest = {**ERROR_EVIDENCE, "verdict": "Healthy", "canary": {"samples": 657.0, "value": 0.0167}}
    obj = ROLLOUTS["progressing"]
    out = text(render_rollout({**obj, "status": {**obj["status"], "lastEvidence": [latest]}}, NOW, PLAIN))
    assert "canary 1.67% n=657" in out and "n=412" not in out.split("Decisions")[0]


def test_rollout_tree_shows_versions_weights_step_and_evidence() -> None:
    out = text(render_rollout(ROLLOUTS["progressing"], NOW, PLAIN))
    assert "Progressing" in out.splitlines()[0]
    assert re.search(r"Stable\s+cancer-rf-v1\s+90%", out) and re.search(r"Canary\s+cancer-rf-v2\s+10%", out)
    assert "step 1/2 at 10%, hold 60s (35s in)" in out
    assert "Verdict     Healthy (analysed 2s ago)" in out
    assert "canary 31.00% n=412  stable 0.40% n=3710" in out
    assert "CI [21.00%, 40.00%]" in out and "p 1.0e-05" in out
    assert "canary 12.3ms n=412  stable 11.8ms n=3710" in out and "ratio 1.04" in out
    assert "Decisions (3 of 3; all: kubectl slipway history cancer-rf)" in out


def test_rollout_states_name_what_to_do() -> None:
    paused = text(render_rollout(ROLLOUTS["paused at a manual gate"], NOW, PLAIN))
    assert "manual gate (waiting 3m)" in paused and "step 2/2 at 50%" in paused
    back = text(render_rollout(ROLLOUTS["rolled back"], NOW, PLAIN))
    assert "Stalled" in back and "cancer-rf-v2 (annotate slipway.dev/retry" in back
    assert "Target" in back  # spec points at the rolled-back version, which serves nothing
    stale = text(render_rollout(ROLLOUTS["aborted, stale status"], NOW, PLAIN))
    assert "(status is for an older spec)" in stale and "Decisions (5 of 20" in stale
    assert "no status yet" in text(render_rollout(ROLLOUTS["no status yet"], NOW, PLAIN))


def test_a_version_proposed_by_drift_retraining_names_its_proposer() -> None:
    out = text(render_rollout(ROLLOUTS["candidate from drift"], NOW, PLAIN))
    assert "Candidate   cancer-rf-v7 proposed by DriftMonitor/cancer-rf" in out
    assert "Inputs      logged to DriftMonitor cancer-rf" in out
    bare = text(render_rollout(ROLLOUTS["candidate without its annotation"], NOW, PLAIN))
    assert "Candidate   v8 proposed by DriftMonitor/x" in bare


def test_history_lists_every_decision_with_evidence() -> None:
    out = text(render_history(ROLLOUTS["progressing"], NOW, PLAIN))
    for action in ("Deploy", "CanaryStarted", "Analysis"):
        assert action in out
    assert "errorRate" in out and "latencyP95" in out
    assert "no decisions yet" in text(render_history(ROLLOUTS["no status yet"], NOW, PLAIN))


def canary_record(version: str, started: float, phase: str, decisions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": f"cancer-rf-{version}-x", "resourceVersion": "7"},
            "spec": {"rolloutRef": {"name": "cancer-rf"}, "canaryVersion": version, "stableVersion": "cancer-rf-v1",
                     "startedAt": ts(started)},
            "status": {"phase": phase, "decisions": decisions}}  # fmt: skip


def test_history_shows_each_canarys_record_whole_and_the_decisions_no_record_holds() -> None:
    # 25 decisions on the first canary: more than the Rollout's status keeps (its latest 20).
    flapping = [decision("Analysis", 3000 - i, step=0, weight=10, verdict="Inconclusive") for i in range(24)]
    first = canary_record("cancer-rf-v2", 3000, "RolledBack", [*flapping, decision("Rollback", 2900, step=0,
                          weight=10, verdict="Regressed", evidence=[ERROR_EVIDENCE])])  # fmt: skip
    second = canary_record("cancer-rf-v3", 35, "Running", [decision("CanaryStarted", 35, step=0, weight=10)])
    status = {"phase": "Progressing", "decisions": [decision("Deploy", 9000), *first["status"]["decisions"][-19:],
                                                    decision("CanaryStarted", 35, step=0, weight=10)]}  # fmt: skip
    out = text(render_history(rollout(status), NOW, PLAIN, [second, first]))
    heads = re.findall(r"\d\d:\d\d:\d\d  (\w+)", out)  # each decision once, none left out
    assert [heads.count(a) for a in ("Analysis", "CanaryStarted", "Deploy", "Rollback")] == [24, 1, 1, 1]
    lines = out.splitlines()
    deploy, v2, v3 = (next(i for i, line in enumerate(lines) if key in line)
                      for key in ("Deploy", "Canary cancer-rf-v2 vs", "Canary cancer-rf-v3 vs"))  # fmt: skip
    assert deploy < v2 < v3 and "RolledBack" in lines[v2] and "Running" in lines[v3]
    assert "CanaryAnalysis cancer-rf-cancer-rf-v2-x" in out and "errorRate" in out


def test_trainingjob_tree_shows_attempts_pods_exit_codes_metrics_and_version() -> None:
    running = text(render_trainingjob(*JOBS["running, second attempt"], NOW, PLAIN))
    assert "Attempts  2 of 3 allowed" in running and "Pods (attempt 2)" in running
    assert "train-1-a2-1" in running and "gpu-node-a100-0" in running and "1 pod(s) of earlier attempts" in running
    failed = text(render_trainingjob(*JOBS["failed"], NOW, PLAIN))
    assert "exit 65" in failed and "InvalidInput" in failed and "Stalled" in failed
    job, pods = JOBS["running, second attempt"]
    preempted = {**job, "status": {**job["status"], "preemptions": 1}}
    assert "Attempts  2 of 4 allowed (1 after preemption)" in text(render_trainingjob(preempted, pods, NOW, PLAIN))
    done = text(render_trainingjob(*JOBS["succeeded"], NOW, PLAIN))
    assert "accuracy 0.9737" in done and "cancer-rf-v3  1.2 MiB" in done and "exit 0" in done
    assert "2 worker(s) x 1 GPU" in done
    assert "ImagePullBackOff" in text(render_trainingjob(*JOBS["pending, image pull"], NOW, PLAIN))


def test_driftmonitor_tree_shows_target_windows_top_features_and_retraining() -> None:
    out = text(render_driftmonitor(MONITORS["drifting"], NOW, PLAIN))
    assert "Rollout cancer-rf  version cancer-rf-v1" in out
    assert "40 evaluated, 1 drifted in a row (retrain at 2)" in out
    assert "drift  p 1.0e-09  distance 0.412" in out
    lowest = [line for line in out.splitlines() if "feature number" in line]
    assert len(lowest) == 5 and "feature number 29" in lowest[0] and "25 more feature(s)" in out
    retraining = text(render_driftmonitor(MONITORS["retraining"], NOW, PLAIN))
    assert "cancer-rf-drift-20261122, 60s ago" in retraining and "(retraining off)" in retraining
    closing = text(render_driftmonitor(MONITORS["canary window and a proposed version"], NOW, PLAIN))
    assert "Canary window 2s ago  50 samples  drift  p 1.0e-04  (cancer-rf-v2)" in closing
    assert "cancer-rf-drift-9, 10m ago" in closing and "registered cancer-rf-v2, proposed to the Rollout" in closing


def test_clip_keeps_escapes_and_closes_colour() -> None:
    line = "\x1b[31m" + "x" * 100 + "\x1b[0m"
    cut = clip(line, 10)
    assert visible_len(cut) == 10 and cut.endswith("\x1b[0m")
    assert clip("short", 10) == "short"


@pytest.mark.parametrize("case", ["progressing", "rolled back", "a name longer than the screen"])
def test_ascii_fallback_when_the_stream_cannot_encode_unicode(case: str) -> None:
    out = render_rollout(ROLLOUTS[case], NOW, Style(unicode=False)) + render_history(
        ROLLOUTS[case], NOW, Style(unicode=False)
    )
    assert all(line.isascii() for line in out), "\n".join(out)


def test_a_long_name_is_cut_but_the_state_stays() -> None:
    first = render_rollout(ROLLOUTS["a name longer than the screen"], NOW, PLAIN)[0]
    assert first.endswith("Pending") and "…" in first and len(first) == 80


class FakeStream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_colours_only_on_a_tty_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert cli.style_for(FakeStream(True)).color and not cli.style_for(FakeStream(False)).color
    monkeypatch.setenv("NO_COLOR", "1")
    assert not cli.style_for(FakeStream(True)).color


class FakeClient:
    """Stands in for client.Client: objects in memory, annotations recorded, an operator that acts on them."""

    def __init__(self, status: dict[str, Any], acts: bool = True) -> None:
        self.status, self.acts, self.annotations = status, acts, {}

    def get(self, kind: str, name: str) -> dict[str, Any]:
        if name != "cancer-rf":
            raise NotFound(f'rollouts.slipway.dev "{name}" not found')
        return rollout(dict(self.status))

    def records(self, rollout: str) -> list[dict[str, Any]]:
        return []

    def annotate(self, kind: str, name: str, key: str, value: str) -> None:
        self.annotations[key] = value
        if self.acts:
            field = {v[0]: v[1] for v in cli.ACTIONS.values()}[key]
            self.status[field] = value


def test_promote_sets_a_fresh_token_and_waits_for_the_operator_to_record_it() -> None:
    fake, out = FakeClient(dict(ROLLOUTS["paused at a manual gate"]["status"])), io.StringIO()
    cli.act(fake, "promote", "cancer-rf", 2.0, out)  # type: ignore[arg-type]
    first = fake.annotations["slipway.dev/promote"]
    assert "the operator acted on it" in out.getvalue()
    cli.act(fake, "promote", "cancer-rf", 0, out)  # type: ignore[arg-type]
    assert fake.annotations["slipway.dev/promote"] != first


def test_actions_that_would_hit_the_next_canary_are_refused() -> None:
    idle = FakeClient(dict(ROLLOUTS["first version"]["status"]))
    for action in ("promote", "abort", "retry"):
        with pytest.raises(ClientError, match=r"nothing to|no rolled-back"):
            cli.act(idle, action, "cancer-rf", 0, io.StringIO())  # type: ignore[arg-type]
    assert idle.annotations == {}
    back, out = FakeClient(dict(ROLLOUTS["rolled back"]["status"]), acts=False), io.StringIO()
    cli.act(back, "retry", "cancer-rf", 0.6, out)  # type: ignore[arg-type]
    assert "slipway.dev/retry" in back.annotations and "not acted on within" in out.getvalue()


def test_watch_without_a_tty_prints_a_frame_per_change(monkeypatch: pytest.MonkeyPatch) -> None:
    versions = iter(["1", "1", "2", "3"])

    class Frame:
        def fetch(self) -> tuple[str, Any]:
            try:
                v = next(versions)
            except StopIteration:
                raise KeyboardInterrupt from None
            return v, lambda now, style: [f"frame {v}"]

    out = FakeStream(False)
    monkeypatch.setattr(cli.time, "sleep", lambda s: None)
    with pytest.raises(KeyboardInterrupt):
        cli.watch(Frame(), out)  # type: ignore[arg-type]
    assert out.getvalue() == "frame 1\n\nframe 2\n\nframe 3\n"


def test_watch_on_a_tty_redraws_in_place_every_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    polls = iter(range(3))

    class Frame:
        def fetch(self) -> tuple[str, Any]:
            try:
                n = next(polls)
            except StopIteration:
                raise KeyboardInterrupt from None
            return "same", lambda now, style: [f"poll {n}"]

    out = FakeStream(True)
    monkeypatch.setattr(cli.time, "sleep", lambda s: None)
    with pytest.raises(KeyboardInterrupt):
        cli.watch(Frame(), out)  # type: ignore[arg-type]
    assert out.getvalue() == "".join(f"{cli.CLEAR}poll {n}\n" for n in range(3))


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "rollout", "x", "-n", "ml", "--context", "c", "--kubeconfig", "k"],
        ["-n", "ml", "--context", "c", "--kubeconfig", "k", "get", "rollout", "x"],
        ["-n", "ml", "get", "rollout", "x", "--context", "c", "--kubeconfig", "k"],
    ],
)
def test_connection_flags_pass_through_wherever_they_are_given(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLIPWAY_KUBECTL", "kubectl")
    args = cli.parser().parse_args(argv)
    client = cli.Client(args.kubeconfig, args.context, args.namespace)
    assert client.argv("get")[1:] == ["--kubeconfig=k", "--context=c", "--namespace=ml", "get"]


def test_errors_are_one_line_and_exit_non_zero(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    def missing(args: Any, out: Any) -> None:
        raise NotFound('rollouts.slipway.dev "nope" not found')

    monkeypatch.setattr(cli, "run", missing)
    assert cli.main(["get", "rollout", "nope"]) == 1
    err = capsys.readouterr().err
    assert err == 'error: rollouts.slipway.dev "nope" not found\n'


@pytest.mark.parametrize(
    ("stderr", "message", "kind"),
    [
        ('Error from server (NotFound): rollouts.slipway.dev "x" not found\n', 'rollouts.slipway.dev "x" not found',
         NotFound),
        ("E1122 memcache.go:265] couldn't get current server API group list\nThe connection to the server "
         "localhost:8080 was refused - did you specify the right host or port?\n",
         "The connection to the server localhost:8080 was refused - did you specify the right host or port?",
         ClientError),
        ("error: context \"nope\" does not exist\n", 'context "nope" does not exist', ClientError),
    ],
)  # fmt: skip
def test_kubectl_errors_become_one_line(stderr: str, message: str, kind: type[Exception]) -> None:
    e = error_from(stderr)
    assert str(e) == message and type(e) is kind


def test_no_cluster_end_to_end_is_one_line(tmp_path: Any, capsys: Any) -> None:
    """The real kubectl against a kubeconfig pointing nowhere (skipped where kubectl is absent)."""
    import shutil

    if not shutil.which("kubectl"):
        pytest.skip("kubectl not on PATH")
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\nusers: [{name: u, user: {}}]\n"
    )
    assert cli.main(["get", "rollout", "x", "--kubeconfig", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_the_evidence_states_the_margin_and_the_alpha_each_test_spent() -> None:
    errors = {**ERROR_EVIDENCE, "margin": 0.02, "alpha": 0.025}
    latency = {**LATENCY_EVIDENCE, "margin": 1.5, "alpha": 0.025}
    obj = ROLLOUTS["progressing"]
    out = text(render_rollout({**obj, "status": {**obj["status"], "lastEvidence": [errors, latency]}}, NOW, PLAIN))
    assert "margin 2.00%  alpha 0.025" in out and "max 1.5x  alpha 0.025" in out
    assert all(len(line) <= 80 for line in out.splitlines())
