"""Snakemake script: score one run's test-set predictions (see mnistflow.evaluation)."""

from mnistflow import evaluation, runtime

runtime.log_to(snakemake.log[0])
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
