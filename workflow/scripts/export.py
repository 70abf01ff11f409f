"""Snakemake script: one run's model.keras as a TensorFlow SavedModel (see mnistflow.export)."""

import os
import time

os.environ["KERAS_BACKEND"] = "tensorflow"  # SavedModel is TensorFlow's, whatever trained

from mnistflow import export, runtime  # noqa: E402

runtime.log_to(snakemake.log[0])
start = time.perf_counter()
export.export_saved_model(snakemake.input.model, snakemake.output[0])
print(f"Exported {snakemake.output[0]} in {time.perf_counter() - start:.1f} s", flush=True)
