"""Snakemake script: the parameter study's tables, plot and summary (see mnistflow.aggregate)."""

from mnistflow import aggregate, runtime

runtime.log_to(snakemake.log[0])
runs = [
    {**run, "metrics": metrics, "history": history}
    for run, metrics, history in zip(
        snakemake.params.runs, snakemake.input.metrics, snakemake.input.history, strict=True
    )
]
for line in aggregate.aggregate(
    runs,
    settings_dest=snakemake.output.settings,
    runs_dest=snakemake.output.runs,
    plot_dest=snakemake.output.plot,
    summary_dest=snakemake.output.summary,
    rungs_dest=snakemake.output.rungs,
    halving=snakemake.params.halving,
    decisions=snakemake.input.halving,
):
    print(line)
