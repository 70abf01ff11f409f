# Configuration, and the input functions the rules share. The package is importable
# (workflow/rules/deployment.smk, included before this file).
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

from mnistflow import containers, datasets, distribution_config, settings, sources
from mnistflow.checkpoint import remove_finished

settings.check_config_files(workflow.configfiles)  # a key given twice
settings.validate_config(
    config, workflow.source_path("../schemas/config.schema.yaml"), validate
)


onstart:
    # Cluster jobs get the --config values on their command line, where Snakemake 9.27 does
    # not quote them safely (snakemake issue 3297): refuse such values before the first
    # submission. The executor is known only here, not while the Snakefile is read.
    if not workflow.local_exec:
        settings.check_cli_config_for_cluster_jobs(
            workflow.config_settings.config_args
        )
        # Resource values go into submit commands, SLURM's unquoted (mnistflow.resource_safety).
        from mnistflow import resource_safety

        resource_safety.check_run(workflow)
        # A study as SLURM job arrays: what the pinned plugin needs (mnistflow.sweeps).
        array_rules = getattr(workflow.executor_settings, "array_jobs", None) or ""
        problems = sweeps.array_job_errors(
            {rule.strip() for rule in array_rules.replace(";", ",").split(",")}
            - {""},
            grouped=STUDY_GROUP is not None,
            jobs=workflow.resource_settings.nodes,
            runs=len(SWEEP),
            config_args=workflow.config_settings.config_args,
            study_rules=STUDY_RULES,
        )
        if problems:
            raise settings.ConfigError(
                "the study cannot go out as SLURM job arrays:\n"
                + "\n".join(problems)
            )
    # --sdm apptainer: no image (or runtime) stops the run before any job runs or is submitted;
    # Snakemake would find a missing image only when the first train job runs.
    if containers.wanted(workflow.deployment_settings):
        containers.check(config["container"])


onsuccess:
    # A finished training keeps its final checkpoint until Snakemake has seen its job succeed
    # (a job killed in between writes its outputs from it on the retry; docs/resume.md). Here,
    # in the main Snakemake only (jobs run with --no-hooks), every job has succeeded.
    cleared = remove_finished(
        config["checkpoint"]["directory"], training_outputs_exist
    )
    if cleared:
        logger.info(
            f"Removed the final checkpoints of {len(cleared)} finished training(s) "
            f"from {config['checkpoint']['directory']}"
        )


def training_outputs_exist(run):
    """Whether rule train's outputs of ``run`` (a Path <dataset>/<family>/<run>) all exist."""
    if len(run.parts) != 3:
        return False
    wildcards = dict(zip(("dataset", "family", "run"), run.parts))
    return all(
        Path(str(pattern).format(**wildcards)).exists()
        for pattern in rules.train.output
    )


DATASET = datasets.get_dataset(config["dataset"])
RUNS = settings.runs(config)  # {family: {run name: hyperparameters}}


wildcard_constraints:
    dataset="|".join(datasets.DATASETS),
    family="|".join(RUNS) or "none",
    run=r"[A-Za-z0-9_.=+-]+",


# Every data set uses MNIST's four IDX file names.
IDX_FILENAMES = {role: DATASET.files[role].filename for role in datasets.IDX_ROLES}


def raw_files(dataset):
    """The four IDX files of a data set, keyed by role (train_images, ...)."""
    return {role: f"resources/{dataset}/{name}" for role, name in IDX_FILENAMES.items()}


def hyperparameters(wildcards):
    return settings.run_hyperparameters(RUNS, wildcards.family, wildcards.run)


# What makes a step rerun when the package changes: every rule with a script names it again
# in its inputs, `code=package_sources("<the script>.py")`, and gets as inputs the mnistflow
# modules the script imports, directly or through each other (mnistflow.sources reads the
# import statements). A new rule needs only that line; tests/test_sources.py fails for a
# rule with a script but without it, or with another script's name.
def package_sources(script, *more_scripts):
    """Modules a step's script runs, as inputs: editing one reruns the step (Snakemake tracks
    the script itself). ``more_scripts``: other scripts the step runs (rule train_study).

    None for a workflow read from git: its tag pins the code, and the cached copies' paths
    change with every run for a branch, which would rerun every step.
    """
    if not LOCAL_WORKFLOW:
        return []
    files = set()
    for name in (script, *more_scripts):
        if not (PACKAGE_DIR / name).is_file():
            raise WorkflowError(
                f"package_sources({name!r}): no such script in {PACKAGE_DIR}; name the "
                'rule\'s script: file, e.g. package_sources("train.py")'
            )
        files.update(
            sources.module_files(PACKAGE_DIR / name, PACKAGE_DIR / "mnistflow")
        )
    return sorted(str(path) for path in files)  # once each: every input costs plan time


def single_run_outputs(dataset, name):
    """One output file of every run outside a study (a study's: sweep_run_outputs)."""
    return [
        f"results/{dataset}/{family}/{run}/{name}"
        for family, run in reported_runs(dataset)
        if family not in SWEPT_FAMILIES
    ]


def report_html(dataset):
    return f"results/{dataset}/report.html"


def train_runtime(wildcards, attempt):
    """Minutes: each retry of a job killed at its time limit asks for more (docs/resume.md)."""
    runtime = config["resources"]["train"]["runtime"]
    return min(runtime * attempt, max(runtime, config["checkpoint"]["max_runtime"]))


def train_resources():
    """The train rule's gpu, plus for a distributed training its nodes and tasks.

    Snakemake's standard vocabulary (distribution_config.job_resources): nodes, tasks
    (processes), gpu per node; each profile maps them (profiles/README.md). Mode none adds
    nothing. The setting was checked with the configuration (settings.validate_config).
    """
    gpu = config["resources"]["train"]["gpu"]
    extra = distribution_config.job_resources(config["distribution"], int(gpu or 0))
    return {"gpu": gpu, **extra}
