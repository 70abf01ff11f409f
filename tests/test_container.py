"""The container route for real: `snakemake --sdm apptainer` runs `train` in the image.

The image is workflow/envs/tensorflow.def built offline from Debian's mirror by
tests/container_image.sh, once per machine (cached under a hash of the definition and the
pins). The step's log names the image it ran in; its param.hdf5 loads into the seeds' estimate
code and its weights are compared with the same training run outside the container.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import REPO, copy_workflow
from lock import NOT_PINNED, closure, normalise
from mnistflow import containers
from schedulers.schedtest import SCHEDULER_TEST_CONFIG, skip_or_fail

PARAM = "results/mnist-sample/softmax/default/param.hdf5"
TRAIN_LOG = "logs/mnist-sample/softmax/default/train.log"
# The tests' training: the scheduler tests' (the sample, softmax, one epoch, 2 threads).
CONFIG = SCHEDULER_TEST_CONFIG

# Seed 001's estimate component (tf.keras, TensorFlow 2.2 era), verbatim but for the data:
# the sample's test split instead of keras.datasets' download.
ESTIMATE = """
    import sys
    import numpy as np
    from tensorflow import keras
    from tensorflow.keras.models import Sequential
    from tensorflow.keras.layers import Dense, Dropout, InputLayer
    sys.path.insert(0, sys.argv[3])
    from mnistflow import idx
    x_test, y_test = idx.read_pair(sys.argv[2] + "/t10k-images-idx3-ubyte.gz",
                                   sys.argv[2] + "/t10k-labels-idx1-ubyte.gz")
    x_test   = x_test.reshape(len(x_test), 784)
    x_test   = x_test.astype('float32')
    x_test  /= 255
    y_test   = keras.utils.to_categorical(y_test, 10)
    model = Sequential()
    model.add(InputLayer(input_shape=(784,)))
    model.add(Dense(10, activation='softmax'))
    model.compile(loss='categorical_crossentropy', optimizer='rmsprop', metrics=['accuracy'])
    model.load_weights(sys.argv[1])
    score = model.evaluate(x_test, y_test, verbose=0)
    print('Test accuracy:', score[1])
"""


def workdir(tmp_path: Path, name: str, image: Path | None = None) -> Path:
    work = copy_workflow(tmp_path / name)
    config = CONFIG + (f"container: {image}\n" if image else "")
    (work / "config" / "container-test.yaml").write_text(config)
    return work


def snakemake_cli(work: Path, *args: str, env=None, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--configfile", "config/container-test.yaml", *args],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def check_run(result: subprocess.CompletedProcess) -> str:
    if result.returncode != 0:
        pytest.fail(f"snakemake exited {result.returncode}\n{result.stderr[-8000:]}")
    return result.stderr


def weights(path: Path) -> dict[str, np.ndarray]:
    arrays = {}

    def visit(name, item):
        if isinstance(item, h5py.Dataset):
            arrays[name] = item[()]

    with h5py.File(path) as h5:
        h5.visititems(visit)
    return arrays


@pytest.fixture(scope="session")
def image() -> Path:
    if shutil.which("apptainer") is None:
        skip_or_fail(
            "apptainer is not installed: bash ../shared/vendor/apptainer/apptainer_up.sh "
            "(tests/run.sh does)"
        )
    result = subprocess.run(
        ["bash", str(REPO / "tests" / "container_image.sh")],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if result.returncode != 0:
        pytest.fail(f"building the image failed:\n{result.stderr[-5000:]}")
    return Path(result.stdout.strip())


# --- before anything runs: no runtime, no image --------------------------------------------


def test_check_names_the_missing_runtime_and_the_missing_image(tmp_path):
    with pytest.raises(containers.ContainerError, match="neither apptainer nor singularity"):
        containers.check("x.sif", tmp_path, which=lambda name: None)
    found = {"singularity": "/usr/bin/singularity"}.get
    with pytest.raises(containers.ContainerError, match="apptainer build --fakeroot x.sif"):
        containers.check("x.sif", tmp_path, which=found)
    (tmp_path / "x.sif").write_bytes(b"")
    assert containers.check("x.sif", tmp_path, which=found) == "singularity"
    assert containers.check("docker://python:3.11", tmp_path, which=found) == "singularity"


def test_missing_image_stops_the_run_before_any_job_is_submitted(tmp_path):
    """Through the SLURM profile: nothing reaches sbatch, nothing is written."""
    work = workdir(tmp_path, "missing", image=tmp_path / "nowhere.sif")
    result = snakemake_cli(work, "--profile", "profiles/slurm", "--sdm", "apptainer")
    assert result.returncode != 0
    assert f"the image '{tmp_path / 'nowhere.sif'}' (config key `container`)" in result.stderr
    assert "apptainer build --fakeroot" in result.stderr
    assert "Submitted" not in result.stderr
    assert not (work / "results").exists() and not (work / "resources").exists()
    # A dry run (onstart does not run for one) still shows the plan.
    assert snakemake_cli(work, "--sdm", "apptainer", "-n").returncode == 0


def test_missing_apptainer_stops_the_run_before_any_job_is_submitted(tmp_path):
    work = workdir(tmp_path, "no-runtime")
    (work / "mnist-tensorflow.sif").write_bytes(b"")
    # No apptainer or singularity on this PATH (they live in /usr/local/bin here).
    path = os.pathsep.join(
        d for d in ("/usr/bin", "/bin") if not any(Path(d, n).exists() for n in containers.RUNTIMES)
    )
    result = snakemake_cli(work, "--cores", "1", "--sdm", "apptainer", env={"PATH": path})
    assert result.returncode != 0
    # Snakemake's own check comes first where a job needs the image; ours otherwise.
    assert re.search(
        "neither apptainer nor singularity is on PATH|The apptainer or singularity command has "
        "to be available",
        result.stderr,
    ), result.stderr[-3000:]
    assert not (work / "results").exists() and not (work / "resources").exists()


# --- the image --------------------------------------------------------------------------


def test_image_holds_exactly_the_pins_of_constraints(image):
    from test_envs import CONSTRAINTS, CONTAINER_PACKAGES

    freeze = subprocess.run(
        ["apptainer", "exec", "--contain", str(image), "python3", "-m", "pip", "freeze", "--all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = dict(line.split("==") for line in freeze.split())
    installed = {normalise(n): v for n, v in installed.items() if normalise(n) not in NOT_PINNED}
    expected = {n: CONSTRAINTS[n] for n in closure(CONTAINER_PACKAGES)}
    assert installed == expected


def test_image_imports_what_train_and_snakemakes_script_need_on_its_own(image):
    """--contain: nothing from the host, not even Snakemake's package that script: binds in."""
    code = "import sys; sys.path[:0] = ['/repo/workflow/scripts']; import mnistflow.training"
    code += "; import snakemake.script"
    subprocess.run(
        [
            "apptainer",
            "exec",
            "--contain",
            "--bind",
            f"{REPO}:/repo",
            str(image),
            "python3",
            "-c",
            code,
        ],
        check=True,
        capture_output=True,
    )


# --- train in the container, and the same training outside it ---------------------------


@pytest.fixture(scope="module")
def trained(image, tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("container-train")
    inside = workdir(tmp, "inside", image)
    outside = workdir(tmp, "outside")
    # --nv as the profiles pass it: harmless without NVIDIA GPUs.
    check_run(
        snakemake_cli(inside, "--cores", "2", "--sdm", "apptainer", "--apptainer-args=--nv", PARAM)
    )
    check_run(snakemake_cli(outside, "--cores", "2", PARAM))
    return {"inside": inside, "outside": outside}


def test_train_ran_inside_the_image(trained, image):
    log = (trained["inside"] / TRAIN_LOG).read_text()
    assert f"container: {image} (python /opt/venv/bin/python" in log
    outside = (trained["outside"] / TRAIN_LOG).read_text()
    assert "container: none" in outside


def test_container_weights_match_the_same_training_outside(trained):
    inside = weights(trained["inside"] / PARAM)
    outside = weights(trained["outside"] / PARAM)
    assert inside.keys() == outside.keys() and inside
    worst = max(float(np.max(np.abs(inside[k] - outside[k]))) for k in inside)
    print(f"max abs difference of the weights, container vs host: {worst:g}")
    # Same wheels, same CPU, same seed: bit-identical here (docs/containers.md).
    assert worst == 0.0


def test_seeds_estimate_code_loads_the_containers_param_hdf5(trained):
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(ESTIMATE),
            str(trained["inside"] / PARAM),
            str(REPO / "data" / "mnist-sample"),
            str(REPO / "workflow" / "scripts"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    accuracy = float(result.stdout.split("Test accuracy:")[1])
    print(f"seed 001's estimate code on the container's param.hdf5: accuracy {accuracy:.4f}")
    assert accuracy > 0.5  # one epoch of softmax on the sample; chance is 0.1
