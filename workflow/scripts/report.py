"""Snakemake script: the HTML report comparing all runs (see mnistflow.report)."""

from pathlib import Path

from mnistflow import report, runtime

runtime.log_to(snakemake.log[0])
# Each run's files in its folder: a single run's are this job's inputs, a study's come in
# through the study's aggregate (workflow/rules/report.smk).
results = Path("results", snakemake.wildcards.dataset)
runs = [
    {
        "run": run,
        "metrics": results / run / "metrics.json",
        "history": results / run / "history.csv",
        "confusion_png": results / run / "confusion_matrix.png",
        "misclassified_png": results / run / "misclassified.png",
    }
    for run in snakemake.params.runs
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
