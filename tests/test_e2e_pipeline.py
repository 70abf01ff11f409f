"""End to end: the real snakemake CLI on a scratch copy of the workflow.

Data comes from the bundled sample served by a real HTTP server on 127.0.0.1, so the
download rule is exercised as on a cluster login node.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, copy_workflow, snakemake
from http_mirror import MirrorServer, no_proxy_for_localhost

pytestmark = pytest.mark.e2e
SAMPLE = REPO / "data" / "mnist-sample"
FILES = sorted(p.name for p in SAMPLE.glob("*.gz"))


def write_config(workdir: Path, mirrors: list[str], **overrides) -> None:
    """A small, fast configuration: the sample data set, two families, one or two epochs."""
    config = {
        "dataset": "mnist-sample",
        "download": {
            "mirrors": mirrors,
            "default_mirrors": False,
            "retries": 1,
            "backoff_seconds": 0.1,
            "timeout_seconds": 10,
        },
        "models": ["softmax", "mlp"],
        "hyperparameters": {"softmax": {"epochs": 2}, "mlp": {"epochs": 1, "hidden_units": 32}},
        "resources": {"train": {"threads": 1}, "evaluate": {"threads": 1}},
    }
    for key, value in overrides.items():
        config[key] = value
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))


def planned_jobs(workdir: Path, *args: str) -> list[str]:
    """The jobs a dry run would execute, as 'rule' or 'rule family/run'."""
    out = snakemake(workdir, "-n", *args).stdout
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        match = re.match(r"(?:local)?rule (\w+):", block.strip())
        if not match or match.group(1) in ("all", "default"):  # the targets, not jobs
            continue
        wildcards = re.search(r"wildcards: (.*)", block)
        family = re.search(r"family=(\w+)", wildcards.group(1)) if wildcards else None
        jobs.append(f"{match.group(1)} {family.group(1)}" if family else match.group(1))
    return sorted(jobs)


@pytest.fixture
def served_sample(http_mirror):
    return http_mirror(SAMPLE)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """The small configuration run once for the tests that read it (a test that edits files
    edits a copy): one pipeline run for the file, not one per test."""
    workdir = copy_workflow(tmp_path_factory.mktemp("finished") / "workflow-copy")
    with pytest.MonkeyPatch.context() as monkeypatch:
        no_proxy_for_localhost(monkeypatch)
        server = MirrorServer(SAMPLE)
        try:
            write_config(workdir, [server.url])
            snakemake(workdir)
        finally:
            server.close()
    return workdir


def test_full_run_produces_every_output_and_nothing_is_left_to_do(finished_run):
    results = finished_run / "results" / "mnist-sample"
    for family in ("softmax", "mlp"):
        run = results / family / "default"
        logs = finished_run / "logs" / "mnist-sample" / family / "default"
        benchmarks = finished_run / "benchmarks" / "mnist-sample" / family / "default"
        outputs = [
            *(run / name for name in ("param.hdf5", "model.keras", "history.csv")),
            *(run / name for name in ("metrics.json", "confusion_matrix.png", "misclassified.png")),
            logs / "train.log",
            logs / "evaluate.log",
            benchmarks / "train.tsv",
            benchmarks / "evaluate.tsv",
        ]
        for path in outputs:
            assert path.stat().st_size > 0, f"{family}: {path}"
        evaluate_log = (logs / "evaluate.log").read_text()
        assert re.search(r"^Test loss: [0-9.]+$", evaluate_log, re.M)
        assert re.search(r"^Test accuracy: 0\.[0-9]+$", evaluate_log, re.M)
        assert len(re.findall(r"^Epoch \d+/\d+ - ", (logs / "train.log").read_text(), re.M)) >= 1
    html = (results / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5  # curves + 2 runs x 2 figures
    assert "softmax/default" in html and "mlp/default" in html
    assert "tensorflow" in html.lower() and "snakemake" in html
    assert planned_jobs(finished_run) == []
    report = snakemake(finished_run, "--report", "snakemake-report.html")
    assert report.returncode == 0 and (finished_run / "snakemake-report.html").exists()


def test_stale_only_reruns(finished_run, tmp_path):
    # A copy with the files' times (copy2): Snakemake's records and the code stamps travel along.
    finished_run = shutil.copytree(finished_run, tmp_path / "workflow-copy", symlinks=True)
    config_path = finished_run / "config" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())

    changed = {**config, "hyperparameters": {**config["hyperparameters"], "softmax": {"epochs": 3}}}
    config_path.write_text(yaml.safe_dump(changed))
    assert planned_jobs(finished_run) == ["evaluate softmax", "report", "train softmax"]

    resplit = {**config, "split": {"validation_size": 400}}
    config_path.write_text(yaml.safe_dump(resplit))
    assert planned_jobs(finished_run) == [
        "evaluate mlp",
        "evaluate softmax",
        "preprocess",
        "report",
        "train mlp",
        "train softmax",
    ]

    config_path.write_text(yaml.safe_dump(config))
    assert planned_jobs(finished_run) == []
    (finished_run / "README.md").write_text("edited\n")
    assert planned_jobs(finished_run) == []

    # A package module is an input of every step whose script imports it, at any depth
    # (code_stamp): evaluate's script imports evaluation, train's does not.
    evaluation = finished_run / "workflow" / "scripts" / "mnistflow" / "evaluation.py"
    evaluation.write_text(evaluation.read_text() + "\n# an edit\n")
    assert planned_jobs(finished_run) == ["evaluate mlp", "evaluate softmax", "report"]

    # Snakemake tracks scripts by modification time: any edit reruns their jobs.
    train_script = finished_run / "workflow" / "scripts" / "train.py"
    train_script.write_text(train_script.read_text() + "\n# an edit\n")
    assert planned_jobs(finished_run) == [
        "evaluate mlp",
        "evaluate softmax",
        "report",
        "train mlp",
        "train softmax",
    ]


def test_mirror_fallbacks_dead_corrupt_and_truncated(
    workflow_dir, served_sample, dead_url, http_mirror
):
    flaky = http_mirror(SAMPLE)
    corrupt = bytearray((SAMPLE / FILES[0]).read_bytes())
    corrupt[len(corrupt) // 2] ^= 0xFF
    flaky.serve(FILES[0], bytes(corrupt))
    flaky.serve(FILES[1], (SAMPLE / FILES[1]).read_bytes()[:200])  # truncated
    write_config(workflow_dir, [dead_url, flaky.url, served_sample.url])
    snakemake(workflow_dir, "results/mnist-sample/data.h5")
    log = (workflow_dir / "logs" / "mnist-sample" / "download.log").read_text()
    assert "refused" in log.lower()
    assert f"{flaky.url}{FILES[0]}" in log and f"{served_sample.url}{FILES[0]}" in log
    assert (
        sorted(p.name for p in (workflow_dir / "resources" / "mnist-sample").glob("*.gz")) == FILES
    )


def test_every_source_failing_stops_with_both_ways_out(
    workflow_dir, dead_url, http_mirror, tmp_path
):
    empty = tmp_path / "empty"
    empty.mkdir()
    write_config(workflow_dir, [dead_url, http_mirror(empty).url])
    result = snakemake(workflow_dir, check=False)
    assert result.returncode != 0
    log = (workflow_dir / "logs" / "mnist-sample" / "download.log").read_text()
    assert dead_url in log and "HTTP 404" in log
    assert "download.mirrors" in log and "dataset=mnist-sample" in log
    assert not list((workflow_dir / "resources" / "mnist-sample").glob("*.gz"))


def test_bad_config_stops_before_any_job(workflow_dir):
    result = snakemake(workflow_dir, "--config", "models=[softmax,transformer]", check=False)
    assert result.returncode != 0
    assert "models.1: 'transformer' is not one of" in result.stderr
    assert "softmax, mlp, cnn" in result.stderr
    assert not (workflow_dir / "results").exists()
    typo = snakemake(workflow_dir, "--config", "seeed=1", check=False)
    assert "'seeed' was unexpected" in typo.stderr and "allowed keys:" in typo.stderr
    negative = snakemake(
        workflow_dir, "--config", "hyperparameters={softmax: {epochs: -1}}", check=False
    )
    assert "hyperparameters.softmax.epochs: -1 is less than the minimum of 1" in negative.stderr


def test_a_job_killed_mid_training_leaves_nothing_a_rerun_would_trust(workflow_dir, served_sample):
    write_config(
        workflow_dir, [served_sample.url], models=["mlp"], hyperparameters={"mlp": {"epochs": 200}}
    )
    run = workflow_dir / "results" / "mnist-sample" / "mlp" / "default"
    train_log = workflow_dir / "logs" / "mnist-sample" / "mlp" / "default" / "train.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "1"],
        cwd=workflow_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 300
        while "Epoch 2/" not in _read(train_log):
            assert process.poll() is None and time.time() < deadline, "training did not start"
            time.sleep(0.5)
        os.killpg(process.pid, signal.SIGKILL)  # as a scheduler does past the walltime
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert not (run / "param.hdf5").exists() and not (run / "model.keras").exists()
    assert not (run / "history.csv").exists()
    write_config(
        workflow_dir, [served_sample.url], models=["mlp"], hyperparameters={"mlp": {"epochs": 1}}
    )
    assert "train mlp" in planned_jobs(workflow_dir, "--rerun-incomplete")
    snakemake(workflow_dir, "--unlock")  # Snakemake itself was killed: its lock remains
    snakemake(workflow_dir, "--rerun-incomplete")
    assert (run / "param.hdf5").exists()
    assert not [p for p in run.iterdir() if ".tmp" in p.name], "temporary files cleaned up"


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""
