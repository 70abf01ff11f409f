"""requirements.txt with constraints.txt resolves for linux aarch64 (Fugaku, Grace, Graviton).

No aarch64 machine is here, so pip resolves the pinned set for that platform without
installing: `pip install --dry-run --only-binary=:all: --platform manylinux_2_28_aarch64 ...`.
pip evaluates environment markers for the machine it runs on, not for --platform
(pip issue 11664), so the test first evaluates our markers for aarch64 itself.
Pure-Python packages published only as sdists (connection-pool) cannot be resolved with
--platform; they are built once into a py3-none-any wheel, which fits every machine.
Needs PyPI (the test fails when it cannot be reached, like a regression would).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

from conftest import REPO

AARCH64 = {**default_environment(), "platform_machine": "aarch64", "extra": ""}
# glibc 2.28: RHEL 8 (Fugaku), Ubuntu 20.04 has 2.31; the TensorFlow wheel is manylinux_2_27.
PLATFORMS = ["manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux2014_aarch64"]
SDIST_ONLY = ["connection-pool"]


def for_aarch64(path, out):
    """The requirement lines of `path` that apply on aarch64, markers removed."""
    lines = []
    for line in path.read_text().splitlines():
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
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
         "--only-binary=:all:", *platforms, "--python-version", "3.11",
         "--implementation", "cp", "--find-links", str(wheels),
         "--target", str(tmp_path / "target"),
         "-c", str(tmp_path / "constraints.txt"), "-r", str(tmp_path / "requirements.txt")],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if proc.returncode != 0 and "ResolutionImpossible" not in proc.stderr:
        pytest.fail(f"pip could not reach PyPI or failed otherwise:\n{proc.stderr[-3000:]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    would = proc.stdout.split("Would install", 1)[-1]
    assert "tensorflow-2.21.0" in would and "jaxlib-0.10.2" in would
