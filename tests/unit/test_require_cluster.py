"""The suite cannot pass by skipping: under SLIPWAY_REQUIRE_CLUSTER=1 a skipped test, or a module that skips
itself, fails the run (tests/require_cluster.py). Shown on a deliberately skipped test in a run of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.conftest import REPO

SKIPPED_TEST = """
import pytest

def test_runs():
    pass

def test_needs_a_cluster():
    pytest.skip("no cluster here")
"""
SKIPPED_MODULE = """
import pytest

pytest.skip("this module's dependency is not installed", allow_module_level=True)

def test_never_collected():
    pass
"""
XFAIL = """
import pytest

@pytest.mark.xfail(reason="known bug", strict=True)
def test_known_bug():
    assert False
"""


def counts(tmp_path: Path) -> dict[str, int]:
    """The run's totals from its JUnit XML, not from pytest's terminal wording."""
    suite = ElementTree.parse(tmp_path / "report.xml").getroot().find("testsuite")
    assert suite is not None
    return {k: int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")}


def run(tmp_path: Path, source: str, require: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_it.py").write_text(source)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the repository's options
    env = {k: v for k, v in os.environ.items() if k != "SLIPWAY_REQUIRE_CLUSTER"}
    env["PYTHONPATH"] = str(REPO)
    if require:
        env["SLIPWAY_REQUIRE_CLUSTER"] = "1"
    plugins = ["-p", "tests.require_cluster", "-p", "no:cacheprovider"]
    argv = [sys.executable, "-m", "pytest", *plugins, "--junitxml=report.xml", "."]
    # A guard against a hang, not a bound on speed: a loaded 2-core machine took over 120 s to start this pytest.
    return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False)


@pytest.mark.parametrize("source", [SKIPPED_TEST, SKIPPED_MODULE], ids=["test", "module"])
def test_a_skip_fails_the_run_when_the_cluster_is_required(tmp_path: Path, source: str) -> None:
    proc = run(tmp_path, source, require=True)
    assert proc.returncode not in (0, 5), proc.stdout
    assert "SLIPWAY_REQUIRE_CLUSTER=1 forbids skips" in proc.stdout  # our words, naming why it failed
    c = counts(tmp_path)
    assert c["skipped"] == 0 and c["failures"] + c["errors"] == 1, c


@pytest.mark.parametrize("source", [SKIPPED_TEST, SKIPPED_MODULE], ids=["test", "module"])
def test_a_skip_stays_a_skip_in_a_developers_run(tmp_path: Path, source: str) -> None:
    proc = run(tmp_path, source, require=False)
    assert proc.returncode in (0, 5), proc.stdout  # 5: the module's only test was never collected
    c = counts(tmp_path)
    assert c["skipped"] == 1 and c["failures"] + c["errors"] == 0, c


def test_an_expected_failure_is_not_a_skip(tmp_path: Path) -> None:
    proc = run(tmp_path, XFAIL, require=True)
    assert proc.returncode == 0, proc.stdout
    assert counts(tmp_path) == {"tests": 1, "failures": 0, "errors": 0, "skipped": 1}  # JUnit counts xfail as skipped
