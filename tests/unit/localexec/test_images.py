"""Image references and local argv of the local executor (slipway_dev/localexec/images.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from slipway_dev.localexec.images import local_argv, repository, runtime_of, runtime_paths


@pytest.mark.parametrize(
    ("image", "repo", "runtime"),
    [
        ("ghcr.io/slipway-dev/trainer:0.1.0", "ghcr.io/slipway-dev/trainer", "trainer"),
        ("localhost:5000/x/predictor", "localhost:5000/x/predictor", "predictor"),
        ("registry:5000/drift:1@sha256:abcd", "registry:5000/drift", "drift"),
        ("ghcr.io/slipway-dev/trainer-gpu:0.1.0", "ghcr.io/slipway-dev/trainer-gpu", None),
        ("docker.io/library/nginx:1.27", "docker.io/library/nginx", None),
        ("trainer", "trainer", "trainer"),
        ("", "", None),
    ],
)
def test_runtime_of(image: str, repo: str, runtime: str | None) -> None:
    assert repository(image) == repo
    assert runtime_of(image) == runtime


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["python", "-m", "x"], ["/venv/bin/python", "-m", "x"]),
        (["python3.11", "-c", "1"], ["/venv/bin/python", "-c", "1"]),
        (["/usr/local/bin/python3", "x.py"], ["/venv/bin/python", "x.py"]),
        (["torchrun", "--nnodes=2", "-m", "x"], ["/venv/bin/torchrun", "--nnodes=2", "-m", "x"]),
        (["sh", "-c", "python x"], ["sh", "-c", "python x"]),
        (["pythonic"], ["pythonic"]),
        ([], []),
    ],
)
def test_local_argv(argv: list[str], expected: list[str]) -> None:
    assert local_argv(argv, "/venv/bin/python") == expected


def test_runtime_paths(tmp_path: Path) -> None:
    assert runtime_paths(tmp_path) == []
    (tmp_path / "runtimes" / "trainer" / "slipway_trainer").mkdir(parents=True)
    (tmp_path / "runtimes" / "drift" / "src").mkdir(parents=True)
    (tmp_path / "runtimes" / "README.md").write_text("")
    (tmp_path / "runtimes" / "__pycache__").mkdir()
    root = tmp_path / "runtimes"
    assert runtime_paths(tmp_path) == [str(root / "drift" / "src"), str(root / "trainer")]
