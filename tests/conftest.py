"""Shared fixtures: a local HTTP mirror, a scratch copy of the workflow, the real MNIST mirror."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnistflow.idx import encode_idx

pytest_plugins = ["http_mirror", "resumecheck"]

REPO = Path(__file__).resolve().parents[1]
# The real MNIST, kept beside the repository as a local mirror (never needed by the project).
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"
WORKFLOW_PARTS = ("Snakefile", "workflow", "config", "data", "profiles")


# Files whose tests train several processes each (minutes per test on two cores).
SLOW_FILES = {"test_distribution.py"}


def pytest_collection_modifyitems(items) -> None:
    """Scheduler, acceptance and end-to-end pipeline tests are ``slow`` too: `-m "not slow"`
    is the fast subset (the slowest tests measured in a run of it, 08:00 UTC 2026-12-03)."""
    for item in items:
        if item.path.name in SLOW_FILES or any(
            item.get_closest_marker(name) for name in ("scheduler", "acceptance", "e2e")
        ):
            item.add_marker(pytest.mark.slow)


def copy_workflow(dest: Path) -> Path:
    """A scratch copy of the workflow, so test runs never write into the repository."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, dest / part)
    return dest


@pytest.fixture
def workflow_dir(tmp_path) -> Path:
    return copy_workflow(tmp_path / "workflow-copy")


def snakemake(
    workdir: Path, *args: str, timeout: float = 900, check: bool = True
) -> subprocess.CompletedProcess:
    """Run the real snakemake CLI in ``workdir``; on failure show its output."""
    command = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout[-5000:]}\n--- stderr ---\n{result.stderr[-8000:]}"
        )
    return result


def write_idx_gz(directory: Path, images: np.ndarray, labels: np.ndarray, prefix: str) -> None:
    """Write ``<prefix>-images-idx3-ubyte.gz`` and ``<prefix>-labels-idx1-ubyte.gz``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(encode_idx(images), mtime=0)
    )
    (directory / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(encode_idx(labels), mtime=0)
    )


def synthetic_digits(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Learnable fake digits: class k lights up row band k, with noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(count, 28, 28))
    for image, label in zip(images, labels, strict=True):
        image[2 + 2 * label : 4 + 2 * label, 4:24] = 255
    return images.astype(np.uint8), labels.astype(np.uint8)


@pytest.fixture
def require_shared_mnist() -> Path:
    if not (SHARED_MNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST mirror not found at {SHARED_MNIST} (tests/CI keep it there)")
    return SHARED_MNIST
