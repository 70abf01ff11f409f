"""Shared fixtures: a local HTTP mirror, a scratch copy of the workflow, the real MNIST mirror."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnistflow.idx import encode_idx

# longest_first (tests/longest_first.py) is opt-in, `-p longest_first`: the one full run with
# it on took 36 min; the next, without it, 25 min (670 tests, 2-core Intel Xeon, 2026-12-03).
pytest_plugins = ["http_mirror", "resumecheck"]

REPO = Path(__file__).resolve().parents[1]
# The scratch copy of the workflow lives beside the benchmarks, which run without the tests.
# Appended, so that perf's scripts (run, sweep, ...) never shadow a module the tests import.
sys.path.append(str(REPO / "perf"))
from workflow_copy import WORKFLOW_PARTS, copy_workflow  # noqa: E402, F401

# The real MNIST, kept beside the repository as a local mirror (never needed by the project).
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


# Files whose tests train several processes each (minutes per test on two cores).
SLOW_FILES = {"test_distribution.py"}

# The level of every test, so a newcomer can pick: `-m unit` (the package
# and the profiles' scripts, no Snakemake run), `-m e2e` (the real snakemake CLI on local
# jobs), `-m scheduler` (real SLURM / Grid Engine / OpenPBS on localhost, the PJM
# simulator), `-m acceptance` (the real MNIST). A test's own level marker wins (mixed
# files mark theirs); otherwise its file's below; otherwise unit. `container` marks the
# tests that need Apptainer and the test image, whatever their level.
LEVELS = ("acceptance", "scheduler", "e2e", "unit")
FILE_LEVELS = {
    "e2e": {
        "test_bad_input.py", "test_config_injection.py", "test_container.py", "test_deploy.py",
        "test_documented_commands.py", "test_e2e_pipeline.py", "test_e2e_sweep.py",
        "test_export.py", "test_report.py", "test_resume_e2e.py", "test_safety_pipeline.py",
    },
    "scheduler": {
        "test_bad_input_schedulers.py", "test_container_schedulers.py", "test_resume_pbs.py",
        "test_resume_pjm.py", "test_resume_slurm.py", "test_resume_uge.py",
        "test_scheduler_pbs.py", "test_scheduler_pjm.py", "test_scheduler_slurm.py",
        "test_scheduler_uge.py", "test_sweep_slurm.py",
    },
}  # fmt: skip
# Tests of unit-level files that run the CLI (named here, not marked in their files: an e2e
# marker there would make them slow, and leave the fast subset).
TEST_LEVELS = {
    "test_profile_refuses_a_bad_site_setting_before_any_submission": "e2e",
    "test_profile_passes_good_site_settings_to_the_jobs": "e2e",
    "test_bad_per_rule_setting_stops_in_the_submit_script_before_pjsub": "e2e",
    "test_each_step_imports_only_what_its_environments_hold": "e2e",
    "test_every_profile_gives_the_set_up_to_snakemake": "e2e",
    "test_a_stopped_then_killed_two_process_training_resumes": "e2e",
}
CONTAINER_FILES = {"test_container.py", "test_container_schedulers.py"}


def level(item) -> str:
    own = [name for name in LEVELS if item.get_closest_marker(name)]
    if own:
        return own[0]
    if item.originalname in TEST_LEVELS:
        return TEST_LEVELS[item.originalname]
    return next((lv for lv, files in FILE_LEVELS.items() if item.path.name in files), "unit")


def pytest_collection_modifyitems(items) -> None:
    """Every test gets its level (above). Scheduler, acceptance and end-to-end pipeline tests
    marked as such in their files are ``slow`` too: `-m "not slow"` is the fast subset (the
    slowest tests measured in a run of it, 08:00 UTC 2026-12-03)."""
    for item in items:
        if item.path.name in SLOW_FILES or any(
            item.get_closest_marker(name) for name in ("scheduler", "acceptance", "e2e")
        ):
            item.add_marker(pytest.mark.slow)
        lv = level(item)
        if not item.get_closest_marker(lv):
            item.add_marker(getattr(pytest.mark, lv))
        if item.path.name in CONTAINER_FILES:
            item.add_marker(pytest.mark.container)


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
