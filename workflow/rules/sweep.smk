# Parameter studies (config `sweep`, docs/sweeps.md). A swept family's runs come from
# mnistflow.sweeps via settings.runs, so train/evaluate need nothing new; this file adds the
# study's threads, its job group and the paths of its aggregate (rule in aggregate.smk).
from mnistflow import sweeps

# Kept in one fixed order, so that reordering the study in the config reruns nothing (the
# report's params hold the whole config, and Snakemake compares params by their repr).
config["sweep"] = sweeps.canonical_sweep(config["sweep"])
SWEEP = sweeps.study(config)  # [SweepRun], by family, setting, seed
SWEPT_FAMILIES = {run.family for run in SWEEP}


# Threads and group are plain values unless only some families are swept: a function per
# job costs Snakemake about a second per thousand runs when it plans.
SOME_SWEPT = bool(SWEEP) and SWEPT_FAMILIES != set(RUNS)


def step_threads(step):
    """Threads of a train/evaluate job: `sweep.threads` for a study's runs, so many run at once."""
    study, default = config["sweep"]["threads"], config["resources"][step]["threads"]
    if not SOME_SWEPT:
        return study if SWEEP else default
    return lambda wildcards: study if wildcards.family in SWEPT_FAMILIES else default


def sweep_group(wildcards):
    """Job group of a study's train + evaluate; a profile's --group-components packs runs."""
    return "sweep" if wildcards.family in SWEPT_FAMILIES else None


STUDY_GROUP = sweep_group if SOME_SWEPT else "sweep" if SWEEP else None


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
