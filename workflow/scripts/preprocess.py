"""Snakemake script: IDX files -> one HDF5 file of train / val / test (mnistflow.preprocess)."""

from pathlib import Path

from mnistflow import datasets, preprocess, runtime

runtime.log_to(snakemake.log[0])
sizes = preprocess.preprocess(
    {role: Path(snakemake.input[role]) for role in datasets.IDX_ROLES},
    Path(snakemake.output[0]),
    dataset=snakemake.wildcards.dataset,
    validation_size=snakemake.params.validation_size,
    seed=snakemake.params.seed,
)
print(f"Wrote {snakemake.output[0]}: {sizes}")
