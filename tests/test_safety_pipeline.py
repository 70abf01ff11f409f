"""Nothing lost, nothing recomputed for nothing, every explanation on the terminal (issue 9).

The real snakemake CLI on scratch copies of the workflow, with the bundled sample served
from a local directory (the README's offline recipe) or a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import gzip
import json
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
from test_e2e_pipeline import planned_jobs

pytestmark = pytest.mark.e2e
SAMPLE = REPO / "data" / "mnist-sample"
RESOURCES = Path("resources") / "mnist-sample"
DATA = "results/mnist-sample/data.h5"
LABELS = "train-labels-idx1-ubyte.gz"


def mirror_config(*mirrors: str) -> str:
    """The README's offline recipe: only these mirrors, never the default ones."""
    return json.dumps({"mirrors": list(mirrors), "default_mirrors": False})


def offline(workdir: Path, *args: str, check: bool = False):
    """A run with no source at all: nothing can be fetched."""
    config = ("--config", "dataset=mnist-sample", f"download={mirror_config()}")
    return snakemake(workdir, *args, *config, check=check)


def report_cells(report: str, column: str) -> list[str]:
    """The cells under ``column`` in every table of the report that has that column."""
    cells = []
    for table in re.findall(r"<table>.*?</table>", report, flags=re.S):
        header = re.findall(r"<th>(.*?)</th>", table)
        if column in header:
            for row in re.findall(r"<tr>((?:<td>.*?</td>)+)</tr>", table):
                cells.append(re.findall(r"<td>(.*?)</td>", row)[header.index(column)])
    return cells


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file's content (Snakemake touches the outputs of a job that succeeds)."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def mirrored_once(tmp_path_factory) -> Path:
    """data.h5 made from a local mirror given with --config, as config/README.md shows."""
    base = tmp_path_factory.mktemp("local-mirror")
    mirror = base / "shared-datasets" / "mnist"
    mirror.mkdir(parents=True)
    for path in SAMPLE.glob("*.gz"):
        (mirror / path.name).write_bytes(path.read_bytes())
    workdir = copy_workflow(base / "workflow-copy")
    snakemake(
        workdir,
        DATA,
        "--config",
        "dataset=mnist-sample",
        f"download={mirror_config(str(mirror))}",
    )
    return workdir


@pytest.fixture
def local_mirror_run(mirrored_once, tmp_path) -> Path:
    """A copy of that run for each test, which may damage its files: one download and
    preprocess for the file, not one per test. copytree keeps the files' times (copy2), and
    Snakemake's records in .snakemake travel along."""
    return shutil.copytree(mirrored_once, tmp_path / "workflow-copy", symlinks=True)


def test_only_the_data_set_and_its_checksums_make_downloads_stale(local_mirror_run):
    work = local_mirror_run
    sample = ("--config", "dataset=mnist-sample")
    assert planned_jobs(work, DATA, *sample) == []
    patience = json.dumps({"retries": 9, "backoff_seconds": 0.5, "timeout_seconds": 5})
    assert planned_jobs(work, DATA, *sample, f"download={patience}") == []
    assert planned_jobs(work, DATA, *sample, "download={default_mirrors: false}") == []
    # The checksums do: a data set whose published files change is fetched again.
    checksums = work / "data" / "mnist-sample" / "checksums.json"
    entries = json.loads(checksums.read_text())
    entries[LABELS]["raw_size"] += 1
    checksums.write_text(json.dumps(entries))
    assert planned_jobs(work, DATA, *sample) == ["download", "preprocess"]


def test_an_offline_rerun_keeps_the_verified_data(local_mirror_run):
    work = local_mirror_run
    before = snapshot(work / RESOURCES)
    assert len(before) == 4
    result = offline(work, DATA)
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr
    # Even when the download runs again (forced, or after a workflow update), files that
    # verify are kept untouched, without any source.
    offline(work, DATA, "--forcerun", "download", check=True)
    assert snapshot(work / RESOURCES) == before
    log = (work / "logs" / "mnist-sample" / "download.log").read_text()
    assert log.count(": verifies, kept") == 4


def test_a_failing_refetch_deletes_no_verified_file(local_mirror_run):
    work = local_mirror_run
    damaged = work / RESOURCES / LABELS
    damaged.write_bytes(gzip.compress(b"\0\0\x08\x01" + b"\0" * 10))
    before = snapshot(work / RESOURCES)
    result = offline(work, DATA, "--forcerun", "download")
    assert result.returncode != 0
    assert snapshot(work / RESOURCES) == before, "every file is kept, the damaged one included"
    # The explanation reaches the terminal, not only logs/.
    assert "could not get train-labels-idx1-ubyte.gz from any source" in result.stderr
    assert "Ways out" in result.stderr and "dataset=mnist-sample" in result.stderr


def test_a_damaged_file_is_named_with_the_command_that_recovers(local_mirror_run, tmp_path):
    work = local_mirror_run
    labels = work / RESOURCES / LABELS
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[8] = 11  # a hand edit: the first label becomes 11
    labels.write_bytes(gzip.compress(bytes(raw)))
    result = snakemake(work, DATA, "--config", "dataset=mnist-sample", check=False)
    assert result.returncode != 0
    terminal = result.stderr
    assert f"{RESOURCES / LABELS}: label 11 found, labels must be 0-9" in terminal
    recover = "snakemake -j4 --forcerun download --config dataset=mnist-sample"
    assert recover in terminal
    # The named command (only up to data.h5, to keep the test short); the bundled sample is
    # the data set's own source.
    command = [sys.executable, "-m", "snakemake", DATA, *recover.split()[1:]]
    subprocess.run(command, cwd=work, check=True, capture_output=True, timeout=600)
    assert labels.read_bytes() == (SAMPLE / LABELS).read_bytes()
    assert planned_jobs(work, DATA, "--config", "dataset=mnist-sample") == []


def test_a_killed_download_leaves_no_temporary_file_behind(workflow_dir, http_mirror):
    slow = http_mirror(SAMPLE)
    slow.delay("train-images-idx3-ubyte.gz", 60, times=1)
    config = ("--config", "dataset=mnist-sample", f"download={mirror_config(slow.url)}")
    process = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "1", DATA, *config],
        cwd=workflow_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    resources = workflow_dir / RESOURCES
    try:
        deadline = time.time() + 120
        while not list(resources.glob(".*.tmp.gz")):
            assert process.poll() is None and time.time() < deadline, "download did not start"
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    stale = list(resources.glob(".*.tmp.gz"))
    assert stale, "the kill left a temporary file, as a real one does"
    snakemake(workflow_dir, "--unlock")
    snakemake(workflow_dir, DATA, *config)
    assert not list(resources.glob(".*tmp*")), "the next attempt removed it"
    log = (workflow_dir / "logs" / "mnist-sample" / "download.log").read_text()
    assert f"removed {stale[0].relative_to(workflow_dir)}" in log


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    """A cnn trained on the sample with its default settings (config/config.yaml)."""
    from conftest import copy_workflow

    work = copy_workflow(tmp_path_factory.mktemp("cnn") / "workflow")
    snakemake(
        work,
        "--config",
        "dataset=mnist-sample",
        "models=[cnn]",
    )
    return work


def test_metrics_and_report_show_the_ema_momentum_used(cnn_run):
    # 1,500 training images / 128 = 12 steps an epoch; the average spans at most a tenth of
    # the run's steps (e.g. 0.8958 for 8 epochs: 9.6 steps), far below the configured one.
    cnn = yaml.safe_load((cnn_run / "config" / "config.yaml").read_text())["hyperparameters"]["cnn"]
    configured = cnn["ema_momentum"]
    used = f"{1 - 1 / (0.1 * cnn['epochs'] * 12):.4f}"
    assert float(used) < configured
    metrics = json.loads(
        (cnn_run / "results" / "mnist-sample" / "cnn" / "default" / "metrics.json").read_text()
    )
    assert f"{metrics['hyperparameters']['ema_momentum']:.4f}" == used
    train_log = cnn_run / "logs" / "mnist-sample" / "cnn" / "default" / "train.log"
    assert f"Averaging the weights with momentum {used}" in train_log.read_text()
    report = (cnn_run / "results" / "mnist-sample" / "report.html").read_text()
    # The cnn's hyperparameter table shows the momentum used, not the configured one (other
    # cells, such as beta_2, may well read the same number).
    shown = report_cells(report, "ema_momentum")
    assert used in shown and f"{configured:g}" not in shown


@pytest.mark.parametrize("step", ["train", "evaluate"])
def test_logs_hold_our_lines_not_tensorflows_start_up_noise(cnn_run, step):
    log = (cnn_run / "logs" / "mnist-sample" / "cnn" / "default" / f"{step}.log").read_text()
    assert "absl::InitializeLog" not in log
    assert "oneDNN custom operations" not in log and "cpu_feature_guard" not in log
    assert "rebuild TensorFlow with the appropriate compiler flags" not in log
    lines = log.splitlines()
    if step == "train":  # which software ran (mnistflow.containers, modules), then the training
        assert lines.pop(0).startswith("container: none (python "), log
        assert lines.pop(0) == "environment modules: none", log
    ours = "Training cnn on 1500 images" if step == "train" else "Test loss: "
    assert ours in lines[0], log


def test_the_log_filter_keeps_warnings_and_errors(tmp_path):
    script = (
        "import os, sys\n"
        "from mnistflow import runtime\n"
        f"runtime.log_to({str(tmp_path / 'x.log')!r})\n"
        "os.write(2, b'I0000 00:00:1795467042.869962    1635 port.cc:153] noise\\n')\n"
        "os.write(2, b'W0000 00:00:1795467042.9    1635 gpu.cc:7] a real warning\\n')\n"
        "print('ours')\n"
        "os.write(2, b'E0000 00:00:1795467042.9    1635 op.cc:9] a real error\\n')\n"
        "os.abort()  # a crash: what came before it still reaches the log\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow" / "scripts")}
    subprocess.run([sys.executable, "-c", script], env=env, timeout=60)
    deadline = time.time() + 10
    while "a real error" not in (tmp_path / "x.log").read_text() and time.time() < deadline:
        time.sleep(0.1)
    lines = (tmp_path / "x.log").read_text().splitlines()
    assert [line.split("] ")[-1] for line in lines] == ["a real warning", "ours", "a real error"]


def test_the_log_filter_outlives_a_signal_to_the_whole_process_group(tmp_path):
    # Schedulers and Ctrl-C signal every process of the job at once; training then still writes
    # its checkpoint lines, which must reach the log rather than a filter that already died.
    log = tmp_path / "x.log"
    script = (
        "import signal, sys, time\n"
        "from mnistflow import runtime\n"
        f"runtime.log_to({str(log)!r})\n"
        "def stop(signum, frame):\n"
        "    time.sleep(0.5)  # finishing the current step\n"
        "    print('checkpoint written after', signal.Signals(signum).name)\n"
        "    sys.exit(143)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('training', flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow" / "scripts")}
    process = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True)
    deadline = time.time() + 30
    while "training" not in (log.read_text() if log.exists() else ""):
        assert time.time() < deadline and process.poll() is None, "the script did not start"
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(timeout=30) == 143
    assert log.read_text().splitlines() == ["training", "checkpoint written after SIGTERM"]
