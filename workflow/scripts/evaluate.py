"""Snakemake script: score one run's test-set predictions (see mnistflow.evaluation)."""

import sys

from mnistflow import evaluation, predictions, preprocess, runtime

runtime.log_to(snakemake.log[0])
try:
    evaluation.evaluate(
        snakemake.input.data,
        snakemake.input.predictions,
        snakemake.wildcards.family,
        snakemake.params.hyperparameters,
        class_names=snakemake.params.class_names,
        run=f"{snakemake.wildcards.family}/{snakemake.wildcards.run}",
        metrics_json=snakemake.output.metrics,
        confusion_png=snakemake.output.confusion,
        misclassified_png=snakemake.output.misclassified,
    )
except (preprocess.DataFileError, predictions.PredictionsError) as error:
    sys.exit(f"ERROR: {error}")  # the message is the whole story: no traceback
