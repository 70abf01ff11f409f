# Parameter studies (config `sweep`, docs/sweeps.md). A swept family's runs come from
# mnistflow.sweeps via settings.runs, so train/evaluate need nothing new; this file adds the
# study's threads and job group, and the aggregate of the runs.
from mnistflow import sweeps

# Kept in one fixed order, so that reordering the study in the config reruns nothing (the
# report's params hold the whole config, and Snakemake compares params by their repr).
config["sweep"] = sweeps.canonical_sweep(config["sweep"])
SWEEP = sweeps.study(config)  # [SweepRun], by family, setting, seed
SWEPT_FAMILIES = {run.family for run in SWEEP}


def step_threads(step):
    """Threads of a train/evaluate job: `sweep.threads` for a study's runs, so many run at once."""

    def threads(wildcards):
        if wildcards.family in SWEPT_FAMILIES:
            return config["sweep"]["threads"]
        return config["resources"][step]["threads"]

    return threads


def sweep_group(wildcards):
    """Job group of a study's train + evaluate; a profile's --group-components packs runs."""
    return "sweep" if wildcards.family in SWEPT_FAMILIES else None


def sweep_outputs(dataset):
    """The aggregate's files, keyed by name; empty without a study."""
    if not SWEEP:
        return {}
    names = {
        "settings": "settings.csv",
        "runs": "runs.csv",
        "plot": "validation_accuracy.png",
        "summary": "summary.txt",
    }
    return {key: f"results/{dataset}/sweep/{name}" for key, name in names.items()}


def sweep_run_outputs(dataset, name):
    return [f"results/{dataset}/{run.family}/{run.name}/{name}" for run in SWEEP]


# Reads small files only: not worth a wait in the cluster's queue.
localrules:
    aggregate_sweep,


rule aggregate_sweep:
    input:
        metrics=lambda wildcards: sweep_run_outputs(wildcards.dataset, "metrics.json"),
        history=lambda wildcards: sweep_run_outputs(wildcards.dataset, "history.csv"),
        code=package_sources("aggregate", "plots"),
    output:
        settings="results/{dataset}/sweep/settings.csv",
        runs="results/{dataset}/sweep/runs.csv",
        plot=report(
            "results/{dataset}/sweep/validation_accuracy.png",
            category="Parameter study",
            labels={"figure": "validation accuracy vs hyperparameters"},
        ),
        summary="results/{dataset}/sweep/summary.txt",
    log:
        "logs/{dataset}/aggregate_sweep.log",
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        # The study itself: a changed set of runs reruns the aggregate even without new files.
        runs=[
            {"family": r.family, "run": r.name, "setting": r.setting, "seed": r.seed}
            for r in SWEEP
        ],
    script:
        "../scripts/aggregate.py"
