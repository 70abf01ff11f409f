"""Deployment the Snakemake community's way: `snakedeploy deploy-workflow <repo> <dir> --tag`.

The repository is a local git repository (a tagged commit of this working tree) placed under
a `github.com/<owner>/<name>` path: snakedeploy then writes the `github(...)` module
declaration it writes for a repository on GitHub, and git's own `url.<base>.insteadOf`
setting sends Snakemake's clone of https://github.com/<owner>/<name> to that local
repository. Everything after the clone (source cache, package import, the bundled sample) is
what a user deploying from GitHub gets.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, copy_workflow, snakemake

pytestmark = pytest.mark.e2e
TAG = "v1.0.0"


def git(cwd: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost", *args]
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True).stdout


def run(command: list[str], cwd: Path, env: dict, timeout: float = 900) -> str:
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-8000:]}"
        )
    return result.stdout + result.stderr


@pytest.fixture
def hosted_repo(tmp_path) -> Path:
    """A bare repository holding this working tree as commit `TAG`, at github.com/mnist/flow."""
    work = copy_workflow(tmp_path / "release")
    shutil.copy2(REPO / "LICENSE", work / "LICENSE")
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "release")
    git(work, "tag", TAG)
    hosted = tmp_path / "hosting" / "github.com" / "mnist" / "flow.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(hosted))
    return hosted


def test_snakedeploy_deployment_runs_the_sample_as_a_module(hosted_repo, tmp_path):
    pytest.importorskip("snakedeploy", reason="pip install -r requirements-dev.txt")
    deployment = tmp_path / "deployment"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {
        "XDG_CACHE_HOME": str(tmp_path / "cache"),  # Snakemake's source cache, fresh
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"url.file://{hosted_repo.parents[1]}/.insteadOf",
        "GIT_CONFIG_VALUE_0": "https://github.com/",
    }
    snakedeploy = Path(sys.executable).with_name("snakedeploy")
    run(
        [str(snakedeploy), "deploy-workflow", str(hosted_repo), str(deployment), "--tag", TAG],
        tmp_path,
        env,
    )

    snakefile = (deployment / "workflow" / "Snakefile").read_text()
    assert f'github("mnist/flow", path="workflow/Snakefile", tag="{TAG}")' in snakefile
    assert not (deployment / "workflow" / "scripts").exists()  # only the module declaration
    # The .test configuration: the bundled sample, which comes from the repository too.
    shutil.copy2(REPO / ".test" / "config" / "config.yaml", deployment / "config" / "config.yaml")

    snakemake = [sys.executable, "-m", "snakemake", "--cores", "2"]
    run(snakemake, deployment, env)
    results = deployment / "results" / "mnist-sample"
    assert (results / "report.html").stat().st_size > 10_000
    for family in ("softmax", "mlp", "cnn"):
        metrics = json.loads((results / family / "default" / "metrics.json").read_text())
        assert metrics["test_images"] == 500
        assert metrics["test_accuracy"] > 0.3, metrics["test_accuracy"]  # chance is 0.1
        assert (deployment / "logs" / "mnist-sample" / family / "default" / "train.log").exists()
    assert "Nothing to be done" in run(snakemake, deployment, env)
    assert not (deployment / ".snakemake" / "mnistflow-code").exists()  # the tag pins the code


def test_run_from_a_checkout_the_steps_depend_on_the_packages_modules(workflow_dir):
    """Locally, code_stamp() covers the checkout's modules: editing one reruns its steps."""
    out = snakemake(workflow_dir, "-n", "--config", "dataset=mnist-sample").stdout
    train = next(block for block in out.split("\n\n") if "rule train:" in block)
    assert ".snakemake/mnistflow-code/train.sha256" in train
    models = workflow_dir / "workflow" / "scripts" / "mnistflow" / "models.py"
    stamp = (workflow_dir / ".snakemake" / "mnistflow-code" / "train.sha256").read_text()
    assert f"{hashlib.sha256(models.read_bytes()).hexdigest()}  mnistflow/models.py" in stamp
