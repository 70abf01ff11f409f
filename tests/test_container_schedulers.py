"""`--sdm apptainer` through the profiles: train runs in the image as a job on real SLURM,
OpenPBS and Grid Engine and on the PJM simulator, with `--nv` as the profiles pass it (harmless
on these CPU nodes) and PJM's `-L jobenv=singularity`.

One training each (the sample, softmax, one epoch); preprocess runs as a job first.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from schedulers.clusters import PBS_ENV, PJM
from schedulers.schedtest import bring_up, run_snakemake
from test_container import PARAM, TRAIN_LOG, image, workdir  # noqa: F401  (image: a fixture)

pytestmark = pytest.mark.scheduler

FAST = {
    "slurm": [
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--latency-wait",
        "10",
        "--slurm-keep-successful-logs",
    ],
    "pbs": ["--seconds-between-status-checks", "1", "--latency-wait", "10"],
    "uge": ["--seconds-between-status-checks", "1", "--latency-wait", "10"],
    "pjm": ["--seconds-between-status-checks", "1", "--latency-wait", "10"],
}
UP = {"slurm": "slurm", "pbs": "pbs", "uge": "gridengine", "pjm": None}
# Where each scheduler (or Snakemake's SLURM plugin) leaves a job's output.
JOB_LOGS = {
    "slurm": "logs/slurm/rule_train",
    "pbs": "logs/pbs",
    "uge": "logs/uge",
    "pjm": "logs/pjm",
}


def scheduler_env(name: str, tmp_path: Path) -> dict[str, str]:
    if name == "pbs":
        return {**PBS_ENV, "MNIST_PBS_QUEUE": "workq", "MNIST_PBS_PROJECT": "proj_mnist"}
    if name == "pjm":
        return PJM().env(tmp_path)
    return {}


@pytest.mark.parametrize("scheduler", ["slurm", "pbs", "uge", "pjm"])
def test_train_runs_in_the_image_through_the_profile(scheduler, image, tmp_path):  # noqa: F811
    if UP[scheduler]:
        bring_up(UP[scheduler])
    work = workdir(tmp_path, "pipeline", image)
    env = scheduler_env(scheduler, tmp_path)
    out = run_snakemake(
        work,
        "--profile",
        f"profiles/{scheduler}",
        "--sdm",
        "apptainer",
        "--configfile",
        "config/container-test.yaml",
        *FAST[scheduler],
        PARAM,
        env=env,
        timeout=600,
    )
    assert "Submitted" in out or "SLURM run ID" in out
    assert f"container: {image} (python /opt/venv/bin/python" in (work / TRAIN_LOG).read_text()
    assert (work / PARAM).stat().st_size > 0
    # The job's Snakemake got the profile's apptainer-args (Snakemake passes them base64-coded)
    # and ran train in the image.
    logs = [p for p in (work / JOB_LOGS[scheduler]).rglob("*") if p.is_file()]
    job_logs = "".join(p.read_text(errors="replace") for p in logs)
    assert "--apptainer-args base64//" + base64.b64encode(b"--nv").decode() in job_logs
    assert f"Activating singularity image {image}" in job_logs
    if scheduler == "pjm":
        train = next(j for j in PJM.history(env) if j["JOB_NAME"].startswith("train"))
        assert PJM.sim_job(env, train["JOB_ID"])["L"]["jobenv"] == "singularity"
