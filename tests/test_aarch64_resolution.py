"""requirements.txt with constraints.txt resolves for linux aarch64 (Fugaku, Grace, Graviton).

No aarch64 machine is here, so pip resolves the pinned set for that platform without
installing: `pip install --dry-run --only-binary=:all: --platform manylinux_2_28_aarch64 ...`.
pip evaluates environment markers for the machine it runs on, not for --platform
(pip issue 11664), so the test first evaluates our markers for aarch64 itself.
Pure-Python packages published only as sdists (connection-pool) cannot be resolved with
--platform; they are built once into a py3-none-any wheel, which fits every machine.
The conda environments (workflow/envs/*.yaml) likewise: their pip sections resolve for aarch64
to exactly the pins they list, and their conda part names only python and pip.
Needs PyPI (the test fails when it cannot be reached, like a regression would).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as canonical

from conftest import REPO
from lock import NOT_PINNED

AARCH64 = {**default_environment(), "platform_machine": "aarch64", "extra": ""}
# glibc 2.28: RHEL 8 (Fugaku), Ubuntu 20.04 has 2.31; the TensorFlow wheel is manylinux_2_27.
PLATFORMS = ["manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux2014_aarch64"]
SDIST_ONLY = ["connection-pool"]


def for_aarch64(path, out, lines=None):
    """The requirement lines of `path` (or `lines`) that apply on aarch64, markers removed."""
    source = path.read_text().splitlines() if lines is None else lines
    lines = []
    for line in source:
        text = line.split("#")[0].strip()
        if not text or text.startswith("-"):
            continue
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate(AARCH64):
            requirement.marker = None
            lines.append(str(requirement))
    out.write_text("\n".join(lines) + "\n")
    return lines


def test_markers_pick_tensorflow_by_machine(tmp_path):
    arm = for_aarch64(REPO / "requirements.txt", tmp_path / "r.txt")
    assert "tensorflow==2.21.0" in arm and not any(r.startswith("tensorflow-cpu") for r in arm)
    x86 = {**AARCH64, "platform_machine": "x86_64"}
    names = []
    for line in (REPO / "requirements.txt").read_text().splitlines():
        text = line.split("#")[0].strip()
        if text and not text.startswith("-"):
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate(x86):
                names.append(requirement.name)
    assert "tensorflow-cpu" in names and "tensorflow" not in names


def test_requirements_resolve_for_linux_aarch64(tmp_path):
    constraints = for_aarch64(REPO / "constraints.txt", tmp_path / "constraints.txt")
    requirements = for_aarch64(REPO / "requirements.txt", tmp_path / "requirements.txt")
    # jax is optional (compute.backend: jax) and has an aarch64 wheel too: resolve it as well.
    jax = next(c for c in constraints if c.startswith("jax=="))
    (tmp_path / "requirements.txt").write_text("\n".join([*requirements, jax]) + "\n")
    wheels = tmp_path / "wheels"
    pins = [c for c in constraints if Requirement(c).name in SDIST_ONLY]
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-binary", ":all:",
         "-w", str(wheels), *pins],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    proc = resolve_for_aarch64(
        tmp_path, "--find-links", str(wheels), "-c", str(tmp_path / "constraints.txt"),
        "-r", str(tmp_path / "requirements.txt"),
    )  # fmt: skip
    would = proc.stdout.split("Would install", 1)[-1]
    assert "tensorflow-2.21.0" in would and "jaxlib-0.10.2" in would


def resolve_for_aarch64(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """pip's dry run for linux aarch64, CPython 3.11, wheels only; fails the test if it fails."""
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
         "--only-binary=:all:", *platforms, "--python-version", "3.11",
         "--implementation", "cp", "--target", str(tmp_path / "target"), *args],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if proc.returncode != 0 and "ResolutionImpossible" not in proc.stderr:
        pytest.fail(f"pip could not reach PyPI or failed otherwise:\n{proc.stderr[-3000:]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


# --- the conda environments (--sdm conda) on linux-aarch64 ------------------------------

ENVS = sorted((REPO / "workflow" / "envs").glob("*.yaml"))
# What the environments may take from conda-forge itself: built for linux-aarch64 too
# (python per platform, pip noarch). No conda channel is reachable from the tests, so this
# cannot be resolved here; everything else comes from PyPI and is resolved below.
CONDA_ON_AARCH64 = {"python", "pip"}


def conda_and_pip(env) -> tuple[list[str], list[str]]:
    dependencies = yaml.safe_load(env.read_text())["dependencies"]
    conda = [d for d in dependencies if isinstance(d, str)]
    pip = next(d["pip"] for d in dependencies if isinstance(d, dict))
    return conda, pip


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_conda_env_resolves_for_linux_aarch64_and_is_complete_there(env, tmp_path):
    conda, pip = conda_and_pip(env)
    names = {Requirement(c.replace(" ", "").replace("=", "==", 1)).name for c in conda}
    assert names <= CONDA_ON_AARCH64, f"{env.name}: conda packages {names - CONDA_ON_AARCH64}"
    pins = for_aarch64(None, tmp_path / "pip.txt", lines=pip)
    assert not any(Requirement(p).name == "tensorflow-cpu" for p in pins), "no aarch64 wheel"
    report = tmp_path / "report.json"
    resolve_for_aarch64(tmp_path, "--report", str(report), "-r", str(tmp_path / "pip.txt"))
    installed = {
        (canonical(i["metadata"]["name"]), i["metadata"]["version"])
        for i in json.loads(report.read_text())["install"]
        if canonical(i["metadata"]["name"]) not in NOT_PINNED  # conda-forge's pip brings them
    }
    listed = {(canonical(Requirement(p).name), str(Requirement(p).specifier)[2:]) for p in pins}
    # Exactly the listed pins: nothing an aarch64 wheel needs is missing from the file.
    assert installed == listed, (sorted(installed - listed), sorted(listed - installed))
