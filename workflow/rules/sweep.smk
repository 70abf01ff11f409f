# Parameter studies (config `sweep`, docs/sweeps.md). A swept family's runs come from
# mnistflow.sweeps via settings.runs, so train/evaluate need nothing new; this file adds the
# study's threads, its job group and the paths of its aggregate (rule in aggregate.smk).
from mnistflow import halving, sweeps

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
if not config["sweep"]["group"]:
    STUDY_GROUP = None  # one job each, e.g. for SLURM arrays (docs/sweeps.md)


def families_pattern(families):
    """A wildcard constraint matching exactly these families ("none", a name no family has,
    when there are none)."""
    return "|".join(sorted(families)) or "none"


# A study run trains and evaluates in one job, train_study in evaluate.smk. Snakemake's
# planning costs about a millisecond per job, so a study of N runs plans N jobs instead of
# 2N. The families tell the rules apart: train and evaluate take the families not swept.
# Not in the container (--sdm apptainer): its image has no matplotlib for the evaluation's
# figures (docs/containers.md), so there a study run stays a train and an evaluate job.
FOLDED_STUDY = bool(SWEEP) and not containers.wanted(workflow.deployment_settings)
STUDY_FAMILIES = families_pattern(SWEPT_FAMILIES if FOLDED_STUDY else ())
SINGLE_FAMILIES = families_pattern(
    set(RUNS) - (SWEPT_FAMILIES if FOLDED_STUDY else set())
)
STUDY_RULES = ["train_study" if FOLDED_STUDY else "train"]
STUDY_RULES += [] if FOLDED_STUDY else ["evaluate"]
STUDY_RULES += ["train_rung"]  # successive halving's rungs


def sweep_outputs(dataset):
    """The aggregate's files, keyed by name; empty without a study."""
    if not SWEEP:
        return {}
    names = {
        "settings": "settings.csv",
        "runs": "runs.csv",
        "plot": "validation_accuracy.png",
        "summary": "summary.txt",
        "rungs": "rungs.csv",  # successive halving's stopped settings (header only without)
    }
    return {key: f"results/{dataset}/sweep/{name}" for key, name in names.items()}


def sweep_run_outputs(dataset, name):
    """One output file of every study run that trains to the end (halving: the promoted)."""
    return [
        f"results/{dataset}/{run.family}/{run.name}/{name}"
        for run in final_runs(dataset)
    ]


# Successive halving (mnistflow.halving; rules in halving.smk): a family's rung trainings stop
# after the rung's epochs and keep their checkpoint; the checkpoint rule select_rung decides
# after each rung which settings continue, so the later rungs' jobs come from its output.
HALVING = {
    family: config["sweep"]["families"][family]["halving"]
    for family in SWEPT_FAMILIES
    if halving.rungs(config["sweep"]["families"][family])
}
FAMILY_RUNS = {}  # family -> [SweepRun]
for _run in SWEEP:
    FAMILY_RUNS.setdefault(_run.family, []).append(_run)


def rung_history(dataset, family, run, epochs):
    """A rung training's output: the run's history up to the rung's epochs."""
    return f"results/{dataset}/{family}/{run}/rung-{epochs}.csv"


def rung_decision(dataset, family, epochs):
    """The checkpoint select_rung's output: the settings ranked at a rung, the promoted ones."""
    return f"results/{dataset}/sweep/halving/{family}/rung-{epochs}.json"


def previous_decision(dataset, family, epochs):
    """[the decision that promoted a run to ``epochs``]; [] at the first rung."""
    rungs = HALVING[family]["rungs"]
    position = rungs.index(int(epochs))
    return [rung_decision(dataset, family, rungs[position - 1])] if position else []


def runs_at_rung(dataset, family, epochs):
    """The runs trained to ``epochs``: all at the first rung, then those promoted to it."""
    rungs = HALVING[family]["rungs"]
    position = rungs.index(int(epochs))
    if position == 0:
        return FAMILY_RUNS[family]
    decision = checkpoints.select_rung.get(
        dataset=dataset, family=family, epochs=rungs[position - 1]
    ).output[0]
    promoted = set(halving.promoted(decision))
    return [run for run in FAMILY_RUNS[family] if run.setting in promoted]


def final_runs(dataset):
    """The study's runs that train to the end: every run, or a halving family's promoted ones."""
    runs = []
    for family, family_runs in FAMILY_RUNS.items():
        if family in HALVING:
            family_runs = runs_at_rung(dataset, family, HALVING[family]["rungs"][-1])
        runs += family_runs
    return runs


def halving_decisions(dataset):
    """Every rung decision of the study's halving families."""
    return [
        rung_decision(dataset, family, epochs)
        for family, spec in HALVING.items()
        for epochs in spec["rungs"][:-1]
    ]


def final_rung_promotion(wildcards):
    """The train job of a halving run: after the decision that promoted it to the last rung."""
    if wildcards.family not in HALVING:
        return []
    rungs = HALVING[wildcards.family]["rungs"]
    return previous_decision(wildcards.dataset, wildcards.family, rungs[-1])


# A plain value without halving: a function per job costs plan time (see step_threads).
TRAIN_PROMOTION = final_rung_promotion if HALVING else []


def reported_runs(dataset):
    """(family, run) of every run that ends with a model: halving's stopped runs do not."""
    if not HALVING:
        return [(family, run) for family, runs in RUNS.items() for run in runs]
    final = {(run.family, run.name) for run in final_runs(dataset)}
    return [
        (family, run)
        for family, runs in RUNS.items()
        for run in runs
        if family not in HALVING or (family, run) in final
    ]
