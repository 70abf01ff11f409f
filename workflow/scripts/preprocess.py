"""Snakemake script: IDX files -> one HDF5 file of train / val / test (mnistflow.preprocess)."""

import sys
from pathlib import Path

from mnistflow import datasets, idx, preprocess, runtime

runtime.log_to(snakemake.log[0])
dataset = snakemake.wildcards.dataset
try:
    sizes = preprocess.preprocess(
        {role: Path(snakemake.input[role]) for role in datasets.IDX_ROLES},
        Path(snakemake.output[0]),
        dataset=dataset,
        validation_size=snakemake.params.validation_size,
        seed=snakemake.params.seed,
        expected=datasets.get_dataset(dataset).files,
    )
except (preprocess.DamagedInputError, idx.IdxError) as error:
    sys.exit(f"ERROR: {error}")  # the message is the whole story: no traceback
print(f"Wrote {snakemake.output[0]}: {sizes}")
