"""Snakemake script: evaluate one run on the test set (see mnistflow.evaluation)."""

from mnistflow import runtime

runtime.log_to(snakemake.log[0])
compute = snakemake.params.compute
# The trained weights are float32 under every precision: evaluate them as they are.
runtime.configure(snakemake.threads, backend=compute["backend"], jit_compile=compute["jit_compile"])

from mnistflow import evaluation  # noqa: E402  (imports Keras: after configure)

evaluation.evaluate(
    snakemake.input.data,
    snakemake.input.param,
    snakemake.wildcards.family,
    snakemake.params.hyperparameters,
    class_names=snakemake.params.class_names,
    run=f"{snakemake.wildcards.family}/{snakemake.wildcards.run}",
    metrics_json=snakemake.output.metrics,
    confusion_png=snakemake.output.confusion,
    misclassified_png=snakemake.output.misclassified,
)
