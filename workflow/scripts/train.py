"""Snakemake script: train one run (see mnistflow.training)."""

from mnistflow import runtime

runtime.log_to(snakemake.log[0])
hyperparameters = snakemake.params.hyperparameters
runtime.configure(snakemake.threads, seed=hyperparameters["seed"], **snakemake.params.compute)

from mnistflow import training  # noqa: E402  (imports Keras: after configure)

training.train(
    snakemake.input.data,
    snakemake.wildcards.family,
    hyperparameters,
    param_hdf5=snakemake.output.param,
    model_keras=snakemake.output.model,
    history=snakemake.output.history,
)
