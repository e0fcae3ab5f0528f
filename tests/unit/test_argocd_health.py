"""The Argo CD health checks (argocd/health/slipway.dev/<Kind>/health.lua) run in a real Lua interpreter.

The cases are Argo CD's own test layout (health_test.yaml naming testdata/*.yaml and the expected status and
message), run the way Argo CD runs a check: the object as the global `obj`, the script's return value a table
with `status` and `message`. Lua 5.4 as asked, and Lua 5.1 too, because Argo CD's interpreter (gopher-lua)
implements 5.1: a 5.4-only construct would pass here and fail there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51, lua54
from slipway import api
from slipway_dev import argocd_cm

from tests.conftest import REPO

HEALTH = REPO / "argocd" / "health" / "slipway.dev"
KINDS = tuple(k.kind for k in (*api.KINDS, *api.RECORDS))  # every kind has its check
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
RUNTIMES = {"lua5.4": lua54.LuaRuntime, "lua5.1": lua51.LuaRuntime}


def health(script: str, obj: dict[str, Any], runtime: str = "lua5.4") -> dict[str, Any]:
    lua = RUNTIMES[runtime](unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script)
    return {k: result[k] for k in ("status", "message")}


def cases() -> list[Any]:
    found = []
    for kind in KINDS:
        spec = yaml.safe_load((HEALTH / kind / "health_test.yaml").read_text())
        for case in spec["tests"]:
            for runtime in RUNTIMES:
                found.append(pytest.param(kind, case, runtime, id=f"{kind}-{Path(case['inputPath']).stem}-{runtime}"))
    return found


@pytest.mark.parametrize(("kind", "case", "runtime"), cases())
def test_health(kind: str, case: dict[str, Any], runtime: str) -> None:
    script = (HEALTH / kind / "health.lua").read_text()
    obj = yaml.safe_load((HEALTH / kind / case["inputPath"]).read_text())
    assert health(script, obj, runtime) == case["healthStatus"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_covers_argo_states_including_no_status(kind: str) -> None:
    spec = yaml.safe_load((HEALTH / kind / "health_test.yaml").read_text())
    statuses = {c["healthStatus"]["status"] for c in spec["tests"]}
    assert statuses <= ARGO_STATUSES
    assert {"Healthy", "Progressing", "Degraded"} <= statuses
    inputs = [yaml.safe_load((HEALTH / kind / c["inputPath"]).read_text()) for c in spec["tests"]]
    assert any("status" not in i for i in inputs), "a case without status (just applied)"


@pytest.mark.parametrize("kind", ["Rollout", "TrainingJob"])
def test_suspended_where_a_person_or_a_queue_holds_it(kind: str) -> None:
    spec = yaml.safe_load((HEALTH / kind / "health_test.yaml").read_text())
    assert "Suspended" in {c["healthStatus"]["status"] for c in spec["tests"]}


def test_a_status_for_an_older_generation_is_progressing_even_if_it_said_healthy() -> None:
    obj = yaml.safe_load((HEALTH / "Rollout" / "testdata" / "promoted.yaml").read_text())
    obj["metadata"]["generation"] = 5
    for kind in (k.kind for k in api.KINDS):  # not a record: the operator writes it whole, nobody's spec to observe
        result = health((HEALTH / kind / "health.lua").read_text(), obj | {"kind": kind})
        assert result == {
            "status": "Progressing",
            "message": "Waiting for the slipway operator to observe generation 5",
        }


def test_the_configmap_embeds_exactly_the_scripts() -> None:
    assert argocd_cm.main(["--check"]) == 0, "argocd/argocd-cm.yaml is stale: run python -m slipway_dev.argocd_cm"
    cm = yaml.safe_load((REPO / "argocd" / "argocd-cm.yaml").read_text())
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "argocd-cm"
    for kind in KINDS:
        embedded = cm["data"][f"resource.customizations.health.slipway.dev_{kind}"]
        assert embedded == (HEALTH / kind / "health.lua").read_text()


def test_check_notices_a_stale_configmap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "argocd-cm.yaml"
    stale.write_text(argocd_cm.render(argocd_cm.scripts()).replace("Healthy", "Degraded", 1))
    monkeypatch.setattr(argocd_cm, "OUTPUT", stale)
    monkeypatch.setattr(argocd_cm, "REPO", tmp_path)
    assert argocd_cm.main(["--check"]) == 1
