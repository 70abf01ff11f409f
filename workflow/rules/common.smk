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


# What makes a step rerun when the code it runs changes: every rule with a script names it
# again in its inputs, `code=code_stamp("<the script>.py")`. That input is one file,
# .snakemake/mnistflow-code/<script>.sha256 (beside Snakemake's own records, so that a run
# refused before any job leaves no results/ or resources/): the sha256 of the script and of
# every mnistflow module it imports, directly or through each other (mnistflow.sources reads
# the import statements), rewritten when Snakemake reads the workflow and one of them changed.
# One input per job instead of the ~25 modules: Snakemake's planning pays for every input of
# every job (its DAG building is slow for big workflows, snakemake issue 1575, open): 16 to
# 20 % of the CPU time of planning a 1,000-run study (docs/sweeps.md). A new rule needs only
# that line; tests/test_sources.py fails for a rule with a script but without it, or with
# another script's name.
def code_stamp(script, *more_scripts):
    """The step's code stamp, as its input: editing its script or a module the script runs
    reruns the step (Snakemake also tracks the rule's own script). ``more_scripts``: other
    scripts the step runs (rule train_study runs evaluate.py after train.py).

    None for a workflow read from git: its tag pins the code, and the cached copies' paths
    change with every run for a branch, which would rerun every step.
    """
    if not LOCAL_WORKFLOW:
        return []
    scripts = [PACKAGE_DIR / name for name in (script, *more_scripts)]
    for path in scripts:
        if not path.is_file():
            raise WorkflowError(
                f"code_stamp({path.name!r}): no such script in {PACKAGE_DIR}; name the "
                'rule\'s script: file, e.g. code_stamp("train.py")'
            )
    name = "+".join(path.stem for path in scripts)
    stamp = sources.write_code_stamp(
        f".snakemake/mnistflow-code/{name}.sha256", scripts, PACKAGE_DIR / "mnistflow"
    )
    return str(stamp)


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
