"""Snakemake script: one successive-halving rung's decision (see mnistflow.halving)."""

from mnistflow import halving, runtime

runtime.log_to(snakemake.log[0])
runs = [
    {**run, "history": history}
    for run, history in zip(snakemake.params.runs, snakemake.input.histories, strict=True)
]
decision = halving.select(runs, int(snakemake.wildcards.epochs), snakemake.params.eta)
decision = {"family": snakemake.wildcards.family, **decision}
halving.write_decision(snakemake.output[0], decision)
for row in decision["settings"]:
    verdict = "promoted" if row["promoted"] else f"stopped, {row['behind_cutoff']:.4f} behind"
    print(f"{row['rank']:>4} {row['setting']}: {row['val_accuracy_mean']:.4f} {verdict}")
