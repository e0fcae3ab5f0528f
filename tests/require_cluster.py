"""Under SLIPWAY_REQUIRE_CLUSTER=1 (`make test`, CI) nothing may be skipped: a skip there is a test that did not
run, however good the reason, so the run fails and names it. Without the variable (a developer's partial run)
skips stay skips.

Loaded by tests/conftest.py; a plugin module of its own so tests/unit/test_require_cluster.py can load it into
a pytest run of its own and show that a skipped test fails that run.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

ENV = "SLIPWAY_REQUIRE_CLUSTER"


def required() -> bool:
    return os.environ.get(ENV) == "1"


def _reason(longrepr: Any) -> str:
    # A skip's longrepr is (path, line, "Skipped: why"); anything else is shown as it is.
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        path, line, why = longrepr
        return f"{why} ({path}:{line})"
    return str(longrepr)


def _fail(report: Any) -> None:
    report.outcome = "failed"
    report.longrepr = f"skipped, but {ENV}=1 forbids skips: {_reason(report.longrepr)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    # xfail reports are skips too (with wasxfail): an expected failure is not a test that did not run.
    if required() and report.skipped and not hasattr(report, "wasxfail"):
        _fail(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    # A module (or a conftest) that skips itself at import skips all of its tests at once.
    outcome = yield
    report = outcome.get_result()
    if required() and report.skipped:
        _fail(report)
