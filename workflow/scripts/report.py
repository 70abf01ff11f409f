"""Snakemake script: the HTML report comparing all runs (see mnistflow.report)."""

from mnistflow import report, runtime

runtime.log_to(snakemake.log[0])
runs = [
    {
        "run": run,
        "metrics": metrics,
        "history": history,
        "confusion_png": confusion,
        "misclassified_png": misclassified,
    }
    for run, metrics, history, confusion, misclassified in zip(
        snakemake.params.runs,
        snakemake.input.metrics,
        snakemake.input.history,
        snakemake.input.confusion,
        snakemake.input.misclassified,
        strict=True,
    )
]
report.build_report(
    runs,
    snakemake.params.config,
    snakemake.output.html,
    title=f"MNIST workflow report: {snakemake.wildcards.dataset}",
    sweep=snakemake.params.sweep or None,
    curves_png=snakemake.output.curves,
    metrics_table=snakemake.output.metrics,
)
print(f"Wrote {snakemake.output.html} comparing {len(runs)} runs")
