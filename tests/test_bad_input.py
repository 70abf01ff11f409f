"""Bad input never becomes a result (issue 20): refused before any job, with the key named.

Unit tests for the checks, and the real snakemake CLI where the item is what a user types.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from conftest import REPO, copy_workflow, snakemake
from mnistflow import resource_safety, settings

SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"
DATA = "results/mnist-sample/data.h5"


def check(config):
    from snakemake.utils import validate

    settings.validate_config(config, SCHEMA_PATH, validate)
    return config


def default_config():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hyperparameters": {"softmax": {"learning_rate": NAN}}},
         "hyperparameters.softmax.learning_rate: nan is not of type 'number' (a finite number"),
        ({"hyperparameters": {"mlp": {"dropout": NAN}}}, "hyperparameters.mlp.dropout: nan"),
        ({"hyperparameters": {"cnn": {"ema_momentum": NAN}}},
         "hyperparameters.cnn.ema_momentum: nan"),
        ({"download": {"timeout_seconds": NAN}}, "download.timeout_seconds: nan"),
        ({"download": {"backoff_seconds": INF}}, "download.backoff_seconds: inf"),
        ({"checkpoint": {"every_minutes": NAN}}, "checkpoint.every_minutes: nan"),
        ({"hyperparameters": {"softmax": {"epochs": 2.0}}},
         "hyperparameters.softmax.epochs: 2.0 is not of type 'integer' (a whole number"),
        ({"seed": 2**32}, "seed: 4294967296 is greater than the maximum of 4294967295"),
        ({"split": {"seed": 2**40}}, "split.seed: 1099511627776 is greater than the maximum"),
        ({"models": []}, "models: [] should be non-empty"),
        ({"sweep": {"families": {"softmax": {"grid": {"learning_rate": [0.1, NAN]}}}}},
         "sweep.families.softmax.grid.learning_rate.1: nan is not a finite number"),
    ],
)  # fmt: skip
def test_every_number_is_finite_and_of_its_type(change, message):
    with pytest.raises(settings.ConfigError) as error:
        check({**default_config(), **change})
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("arg", "key"),
    [
        ("hyperparameters={softmax: {learning_rate: .nan}}",
         "hyperparameters.softmax.learning_rate"),
        ("hyperparameters={softmax: {epochs: 2.0}}", "hyperparameters.softmax.epochs"),
        ("seed=4294967296", "seed"),
    ],
)  # fmt: skip
def test_a_bad_number_on_the_command_line_stops_before_any_job(workflow_dir, arg, key):
    result = snakemake(
        workflow_dir, "--config", "dataset=mnist-sample", "models=[softmax]", arg, check=False
    )
    assert result.returncode != 0
    assert f"invalid configuration (config/config.yaml or --config):\n  {key}: " in result.stderr
    assert not (workflow_dir / "results").exists() and not (workflow_dir / "resources").exists()


@pytest.mark.parametrize(
    ("name", "value", "refused"),
    [
        ("mem_mb_per_cpu", "100; touch /tmp/PWN #", "whole number of MB per CPU"),
        ("mem_mb", "4000 --wrap=id", "whole number of MB"),
        ("gpu", "1 $(id)", "whole number"),
        ("tasks", True, "whole number"),
        ("runtime", 10**9, "from 0 to 525600"),
        ("nodes", 0, "of at least 1"),
        ("slurm_extra", "--mail-type=END; touch x #", "options separated by single spaces"),
        ("slurm_extra", "--comment='a b'", "options separated by single spaces"),
        ("slurm_partition", "gpu --wrap=id", "a name or path"),
        ("slurm_account", "-Afoo", "a name or path"),
        ("pjm_rscgrp", "a`id`", "a name or path"),
        ("mem", "4GB; id", "a size"),
        ("pbs_extra", "-l 'software=abc", "every quote closed"),
        ("pjm_extra", "-x A=1\n-x B=2", "one line"),
    ],
)
def test_resource_values_a_submit_command_could_misread_are_refused(name, value, refused):
    assert refused in resource_safety.problem(name, value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("mem_mb", 4000), ("runtime", 60), ("gpu", 0), ("cpus_per_task", -1),
        ("mem", "2 GB"), ("disk", "50GB"), ("tmpdir", "/tmp"), ("gpu_model", ""),
        ("gpu_model", "a100"), ("slurm_partition", "gpu,gpu2"), ("slurm_account", "proj-1"),
        ("slurm_extra", "--qos=long --mail-type=END"), ("pjm_gfscache", "/vol0004:/vol0005"),
        ("mpi", "srun"), ("custom_count", 10**12), ("uge_queue", "gpu.q@node*"),
        ("pbs_extra", "-l 'software=abc def'"),
    ],
)  # fmt: skip
def test_ordinary_resource_values_pass(name, value):
    assert resource_safety.problem(name, value) is None


def test_a_training_whose_loss_becomes_nan_stops_and_saves_nothing(workflow_dir):
    # Adam's steps are about the learning rate: weights of 1e38 overflow the logits to inf.
    hp = "hyperparameters={softmax: {epochs: 2, optimizer: adam, learning_rate: 1.0e+38}}"
    run = workflow_dir / "results" / "mnist-sample" / "softmax" / "default"
    result = snakemake(
        workflow_dir,
        str(run.relative_to(workflow_dir) / "param.hdf5"),
        "--config",
        "dataset=mnist-sample",
        "models=[softmax]",
        hp,
        check=False,
    )
    assert result.returncode != 0
    assert "training softmax/default diverged: the loss became nan in epoch 1" in result.stderr
    assert "hyperparameters.softmax.learning_rate, now 1e+38" in result.stderr
    assert not run.exists() or not list(run.iterdir()), "no output of a diverged training"
    assert not list(workflow_dir.glob(".checkpoints/**/*.npz")), "no checkpoint of NaN weights"


def test_weights_that_are_not_finite_are_never_saved():
    import keras

    from mnistflow import models, numerics

    hp = {"epochs": 1, "batch_size": 8, "optimizer": "sgd", "learning_rate": 0.1, "seed": 0}
    model = models.build_model("softmax", hp)
    numerics.check_weights(model, "softmax", "default", hp)  # finite: passes
    kernel = model.trainable_weights[0]
    kernel.assign(keras.ops.full(kernel.shape, float("inf")))
    with pytest.raises(numerics.NonFiniteTraining, match="softmax/default ended with weights"):
        numerics.check_weights(model, "softmax", "default", hp)


@pytest.mark.parametrize(
    ("directory", "overlaps"),
    [("results", "results/"), ("results/ckpt", "results/"), (".", "results/"),
     ("logs/../logs/x", "logs/"), ("resources", "resources/"), ("benchmarks", "benchmarks/")],
)  # fmt: skip
def test_the_checkpoint_folder_cannot_overlap_the_outputs(tmp_path, directory, overlaps):
    config = {"checkpoint": {"directory": directory}}
    (line,) = settings.checkpoint_errors(config, tmp_path)
    assert f"checkpoint.directory: {directory!r} overlaps {overlaps}" in line
    assert settings.checkpoint_errors({"checkpoint": {"directory": ".checkpoints"}}, tmp_path) == []
    assert settings.checkpoint_errors({"checkpoint": {"directory": "/scratch/x"}}, tmp_path) == []


def test_a_checkpoint_folder_in_results_stops_before_any_job(workflow_dir):
    result = snakemake(
        workflow_dir, "--config", "dataset=mnist-sample", "models=[softmax]",
        "hyperparameters={softmax: {epochs: 1}}", "checkpoint={directory: results}", check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "checkpoint.directory: 'results' overlaps results/" in result.stderr
    assert not (workflow_dir / "results").exists()


def test_clearing_checkpoints_removes_only_the_files_they_wrote(tmp_path):
    import numpy as np

    from mnistflow import checkpoint

    run = tmp_path / "shared" / "mnist" / "softmax" / "default"
    store = checkpoint.Store(run, {"data": "x"}, print, root=tmp_path / "shared")
    store.save(checkpoint.State(epoch=1, batch=0, step=12, variables={"model": [np.ones(3)]}))
    (run / ".checkpoint-000002.abc.tmp.npz").write_bytes(b"torn")  # a killed save's leftover
    (run / "param.hdf5").write_bytes(b"not ours")
    store.clear()
    assert sorted(p.name for p in run.iterdir()) == ["param.hdf5"]
    (run / "param.hdf5").unlink()
    store.clear()  # now empty: the folder and its empty parents up to the root go
    assert list(tmp_path.iterdir()) == []


def _damage(data, how: str) -> None:
    """Train images overwritten in place with random bytes (same size), or the file cut short."""
    import h5py
    import numpy as np

    if how == "truncated":
        with open(data, "r+b") as handle:
            handle.truncate(data.stat().st_size // 3)
        return
    with h5py.File(data, "r") as h5:
        offset, size = h5["train/images"].id.get_offset(), h5["train/images"].id.get_storage_size()
    with open(data, "r+b") as handle:
        handle.seek(offset)
        handle.write(np.random.default_rng(0).bytes(size))


@pytest.fixture(scope="module")
def preprocessed_once(tmp_path_factory) -> Path:
    """The sample's data.h5, made by the workflow once for the tests below."""
    work = copy_workflow(tmp_path_factory.mktemp("preprocessed") / "workflow-copy")
    snakemake(work, DATA, "--config", "dataset=mnist-sample")
    return work


@pytest.fixture
def preprocessed(preprocessed_once, tmp_path) -> Path:
    """A copy of it for each test, which damages its data.h5: one download and preprocess for
    the file, not one per test (copytree keeps the times and Snakemake's records)."""
    return shutil.copytree(preprocessed_once, tmp_path / "workflow-copy", symlinks=True)


@pytest.mark.parametrize("how", ["overwritten", "truncated"])
def test_a_damaged_data_file_stops_training_naming_it_and_the_fix(preprocessed, how):
    from mnistflow import preprocess

    workflow_dir = preprocessed
    config = ("--config", "dataset=mnist-sample", "models=[softmax]",
              "hyperparameters={softmax: {epochs: 1}}")  # fmt: skip
    data = workflow_dir / DATA
    _damage(data, how)
    param = "results/mnist-sample/softmax/default/param.hdf5"
    result = snakemake(workflow_dir, param, *config, check=False)
    assert result.returncode != 0 and not (workflow_dir / param).exists()
    problem = "do not match the checksum" if how == "overwritten" else "cannot be read"
    assert f"ERROR: {DATA}" in result.stderr and problem in result.stderr
    recover = "snakemake -j4 --forcerun preprocess --config dataset=mnist-sample"
    assert recover in result.stderr
    # The named command rebuilds it (only up to data.h5, to keep the test short).
    snakemake(workflow_dir, DATA, *recover.split()[2:])
    assert len(preprocess.load_split(data, "train")[1]) == 1500


def test_each_split_is_checked_when_read(preprocessed):
    import h5py

    from mnistflow import preprocess

    data = preprocessed / DATA
    with h5py.File(data, "r+") as h5:
        h5["test/labels"][0] = 9 - h5["test/labels"][0]  # a hand edit of one label
    with pytest.raises(preprocess.DataFileError) as error:
        preprocess.load_split(data, "test")  # as the evaluate step reads it
    assert f"{data}: test/labels: its data do not match the checksum" in str(error.value)
    assert "--forcerun preprocess --config dataset=mnist-sample" in str(error.value)
    with h5py.File(data, "r+") as h5:
        del h5["val/images"].attrs["sha256"]  # written before the checksums existed
    with pytest.raises(preprocess.DataFileError, match="val/images carries no checksum"):
        preprocess.load_split(data, "val")
    assert len(preprocess.load_split(data, "train")[1]) == 1500  # the others still verify


def test_a_predictions_file_that_is_not_ours_names_the_file_and_the_fix(tmp_path):
    from mnistflow import predictions

    garbage = tmp_path / "predictions.npz"
    garbage.write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, }")
    with pytest.raises(predictions.PredictionsError) as error:
        predictions.load(garbage, 500, 10)
    assert str(garbage) in str(error.value) and "Delete it and rerun" in str(error.value)


def test_a_key_given_twice_in_a_config_file_is_named_with_its_lines(workflow_dir):
    (workflow_dir / "my.yaml").write_text(
        "dataset: mnist-sample\nseed: 1\nmodels: [mlp]\nseed: 2\n"
    )
    result = snakemake(workflow_dir, "-n", "--configfile", "my.yaml", check=False)
    assert result.returncode != 0
    out = result.stdout + result.stderr  # a dry run reports on stdout
    assert "my.yaml, line 4: the key 'seed' is given twice (first on line 2)" in out


def test_a_target_for_a_run_that_is_not_configured_names_the_runs_there_are(workflow_dir):
    target = "results/mnist-sample/softmax/foo/metrics.json"
    result = snakemake(
        workflow_dir, "-n", target, "--config", "dataset=mnist-sample", "models=[softmax]",
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    out = result.stdout + result.stderr  # a dry run reports on stdout
    assert "no run softmax/foo in the configuration (its runs: softmax/default)" in out
    assert "KeyError" not in out
