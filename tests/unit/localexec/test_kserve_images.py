"""KServe's images in the local executor's image mapping (slipway_dev/localexec/images.py): which
references name them, what they run, and the ErrImagePull message when that is not built."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from slipway_dev.localexec import images
from slipway_dev.localexec.images import LocalImage, Programs, Unavailable, kserve_image_of, resolve

SCRIPT = "python/storage-initializer/scripts/initializer-entrypoint"


@pytest.fixture
def where(tmp_path: Path) -> Programs:
    """A built KServe venv (bin/python, kserve-src -> a module dir) and bin dir, as
    hack/build-kserve-python.sh and hack/build-serving.sh leave them."""
    module = tmp_path / "mod" / "kserve@v0.20.0"
    (module / SCRIPT).parent.mkdir(parents=True)
    (module / SCRIPT).write_text("#!/usr/bin/env python3\n")
    (module / "python/sklearnserver/sklearnserver").mkdir(parents=True)
    (module / "python/sklearnserver/sklearnserver/__main__.py").write_text("")
    venv = tmp_path / "venvs" / "kserve"
    (venv / "bin").mkdir(parents=True)
    _executable(venv / "bin" / "python")
    (venv / "kserve-src").symlink_to(module)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _executable(bin_dir / "kserve-agent")
    return Programs(python="/venv/bin/python", repo_root=tmp_path / "repo", kserve_venv=venv, bin_dir=bin_dir)


def _executable(path: Path) -> None:
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)


@pytest.mark.parametrize(
    ("image", "kind"),
    [
        # What KServe v0.20.0's config names: config/configmap/inferenceservice.yaml,
        # config/storagecontainers (kustomize newName), config/runtimes (kustomize newName).
        ("kserve/storage-initializer:latest", "storage-initializer"),
        ("kserve/agent:latest", "agent"),
        ("kserve/sklearnserver:latest", "sklearnserver"),
        ("kserve/storage-initializer:v0.20.0", "storage-initializer"),
        ("docker.io/kserve/agent:v0.20.0", "agent"),
        ("index.docker.io/kserve/sklearnserver:v0.20.0@sha256:abcd", "sklearnserver"),
        ("localhost:5000/kserve/agent", "agent"),
        ("quay.io/opendatahub/kserve-agent:v0.20", "agent"),
        ("kserve-sklearnserver:replace", "sklearnserver"),  # the runtimes' kustomize placeholder
        ("kserve/xgbserver:latest", None),  # not mapped (yet)
        ("kserve/agent-extra:1", None),
        ("myorg/agent:1", None),
        ("agent:1", None),
        ("ghcr.io/slipway-dev/predictor:0.1.0", None),
        ("", None),
    ],
)
def test_kserve_image_of(image: str, kind: str | None) -> None:
    assert kserve_image_of(image) == kind


def test_storage_initializer_runs_kserves_script_with_the_venv(where: Programs) -> None:
    img = resolve("kserve/storage-initializer:v0.20.0", where)
    python = str(where.kserve_venv / "bin" / "python")
    script = str(where.kserve_venv / "kserve-src" / SCRIPT)
    # As the webhook injects it: no command, args <srcURI> <destPath>.
    container = {"name": "storage-initializer", "args": ["s3://models/iris", "/mnt/models"]}
    assert img.local_argv(img.command(container)) == [python, script, "s3://models/iris", "/mnt/models"]
    # A command naming the image's entrypoint (by path or name) is the same program.
    for head in (images.INITIALIZER_ENTRYPOINT, "initializer-entrypoint"):
        assert img.local_argv([head, "gs://b/m", "/mnt/models"]) == [python, script, "gs://b/m", "/mnt/models"]
    assert img.local_argv(["python3", "-c", "pass"]) == [python, "-c", "pass"]
    assert img.path == (str(where.kserve_venv / "bin"),)
    assert img.env == {"VIRTUAL_ENV": str(where.kserve_venv)}
    assert img.pythonpath == ()  # kserve_storage is installed in the venv


def test_sklearnserver_runs_the_module_from_kserves_source(where: Programs) -> None:
    img = resolve("kserve/sklearnserver:v0.20.0", where)
    python = str(where.kserve_venv / "bin" / "python")
    # The kserve-sklearnserver ClusterServingRuntime's container: args only.
    container = {"args": ["--model_name=iris", "--model_dir=/mnt/models", "--http_port=8080"]}
    argv = img.local_argv(img.command(container))
    assert argv == [python, "-m", "sklearnserver", "--model_name=iris", "--model_dir=/mnt/models", "--http_port=8080"]
    assert img.pythonpath == (str(where.kserve_venv / "kserve-src" / "python" / "sklearnserver"),)
    # A pod's own command replaces the ENTRYPOINT; `python` in it is still the venv's.
    assert img.command({"command": ["/prod_venv/bin/python", "-m", "x"], "args": ["a"]}) == [
        "/prod_venv/bin/python",
        "-m",
        "x",
        "a",
    ]
    assert img.local_argv(["/prod_venv/bin/python", "-m", "x"]) == [python, "-m", "x"]


def test_agent_runs_the_built_binary(where: Programs) -> None:
    img = resolve("kserve/agent:v0.20.0", where)
    agent = str(where.bin_dir / "kserve-agent")
    container = {"args": ["--enable-puller", "--config-dir", "/mnt/configs", "--component-port", "8080"]}
    assert img.local_argv(img.command(container)) == [agent, *container["args"]]
    assert img.local_argv([images.AGENT_ENTRYPOINT, "--help"]) == [agent, "--help"]
    assert img.path == () and img.pythonpath == () and not img.env


def test_missing_venv_is_err_image_pull_naming_the_build(where: Programs, tmp_path: Path) -> None:
    gone = Programs(where.python, where.repo_root, kserve_venv=tmp_path / "nowhere", bin_dir=where.bin_dir)
    for image in ("kserve/storage-initializer:v0.20.0", "kserve/sklearnserver:v0.20.0"):
        with pytest.raises(Unavailable) as err:
            resolve(image, gone)
        assert str(err.value) == (
            f'image "{image}" is not available to the local executor: KServe\'s Python runtimes are not built '
            f"(no {tmp_path / 'nowhere' / 'bin' / 'python'}); run hack/build-kserve-python.sh"
        )


def test_missing_source_is_err_image_pull(where: Programs) -> None:
    # The Go module cache was cleaned under the venv's kserve-src link.
    (where.kserve_venv / "kserve-src").unlink()
    for image in ("kserve/storage-initializer:v0.20.0", "kserve/sklearnserver:v0.20.0"):
        with pytest.raises(Unavailable, match=r"KServe's source is missing .*run hack/build-kserve-python\.sh"):
            resolve(image, where)


def test_missing_agent_is_err_image_pull_naming_the_build(where: Programs) -> None:
    agent = where.bin_dir / "kserve-agent"
    agent.chmod(0o644)  # present but not executable is not built either
    if os.access(agent, os.X_OK):  # root may still execute it
        agent.unlink()
    with pytest.raises(Unavailable) as err:
        resolve("kserve/agent:latest", where)
    assert str(err.value) == (
        'image "kserve/agent:latest" is not available to the local executor: '
        f"KServe's agent is not built (no {agent}); run hack/build-serving.sh"
    )


def test_other_images_are_unavailable(where: Programs) -> None:
    with pytest.raises(Unavailable) as err:
        resolve("docker.io/library/nginx:1.27", where)
    assert str(err.value).startswith('image "docker.io/library/nginx:1.27" is not available to the local executor:')
    assert "kserve/storage-initializer" in str(err.value) and ".../trainer" in str(err.value)


def test_slipway_runtimes_resolve_as_before(where: Programs, tmp_path: Path) -> None:
    (where.repo_root / "runtimes" / "trainer" / "src").mkdir(parents=True)
    (where.repo_root / "runtimes" / "drift").mkdir(parents=True)
    img = resolve("ghcr.io/slipway-dev/trainer:0.1.0", where)
    assert img == LocalImage(
        name="trainer",
        entrypoint=("python", "-m", "slipway_trainer"),
        python="/venv/bin/python",
        pythonpath=(str(where.repo_root / "runtimes/drift"), str(where.repo_root / "runtimes/trainer/src")),
        path=("/venv/bin",),
        heads={"torchrun": ("/venv/bin/torchrun",)},
    )
    assert img.local_argv(img.command({"args": ["--x"]})) == ["/venv/bin/python", "-m", "slipway_trainer", "--x"]
    assert img.local_argv(["/usr/bin/torchrun", "--nproc-per-node=2", "t.py"]) == [
        "/venv/bin/torchrun",
        "--nproc-per-node=2",
        "t.py",
    ]
    assert img.local_argv(["sh", "-c", "python x"]) == ["sh", "-c", "python x"]
    # The KServe locations do not matter to them.
    bare = Programs(where.python, where.repo_root, kserve_venv=tmp_path / "none", bin_dir=tmp_path / "none")
    assert resolve("ghcr.io/slipway-dev/predictor:0.1.0", bare).name == "predictor"


def test_defaults_follow_the_build_scripts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SLIPWAY_BIN", raising=False)
    monkeypatch.delenv("SLIPWAY_KSERVE_VENV", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert images.default_bin_dir() == tmp_path / ".cache/slipway/bin"
    assert images.default_kserve_venv() == tmp_path / ".cache/slipway/venvs/kserve"
    monkeypatch.setenv("SLIPWAY_BIN", "/opt/bin")
    monkeypatch.setenv("SLIPWAY_KSERVE_VENV", "/opt/kserve")
    assert Programs("python", tmp_path) == Programs("python", tmp_path, Path("/opt/kserve"), Path("/opt/bin"))
