"""Snakemake script: classify the images of config predict.images (see mnistflow.predict)."""

import sys

from mnistflow import runtime

runtime.log_to(snakemake.log[0])
runtime.configure(snakemake.threads, **snakemake.params.compute)

from mnistflow import predict  # noqa: E402  (imports Keras: after configure)

try:
    predict.predict(
        snakemake.input.images,
        snakemake.input.model,
        snakemake.output[0],
        class_names=snakemake.params.class_names,
        invert=snakemake.params.invert,
    )
except predict.PredictInputError as error:
    sys.exit(f"ERROR: {error}")
