"""Snakemake script: train one run (see mnistflow.training), resuming from a checkpoint."""

import sys
from pathlib import Path

from mnistflow import runtime

runtime.log_to(snakemake.log[0])
hyperparameters = snakemake.params.hyperparameters
runtime.configure(snakemake.threads, seed=hyperparameters["seed"], **snakemake.params.compute)

from mnistflow import stopping, training  # noqa: E402  (imports Keras: after configure)

# Read from the config, not params: checkpoint settings do not change the result, so
# editing them must not rerun finished trainings.
checkpoints = snakemake.config["checkpoint"]
wildcards = snakemake.wildcards
try:
    training.train(
        snakemake.input.data,
        wildcards.family,
        hyperparameters,
        param_hdf5=snakemake.output.param,
        model_keras=snakemake.output.model,
        history=snakemake.output.history,
        predictions_npz=snakemake.output.predictions,
        run=wildcards.run,
        checkpoints=Path(
            checkpoints["directory"], wildcards.dataset, wildcards.family, wildcards.run
        ),
        checkpoints_root=checkpoints["directory"],
        every_epochs=checkpoints["every_epochs"],
        every_minutes=checkpoints["every_minutes"],
    )
except stopping.Stopped as stop:
    print(f"{stop}; rerun (or let the scheduler retry) to resume.", flush=True)
    sys.exit(stop.exit_code)
