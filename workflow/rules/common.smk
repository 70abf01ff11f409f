import sys
from pathlib import Path

from snakemake.utils import validate

# The workflow's logic lives in an importable package beside the scripts.
PACKAGE_DIR = Path(workflow.current_basedir).parent / "scripts"
sys.path.insert(0, str(PACKAGE_DIR))

from mnistflow import datasets, settings  # noqa: E402

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
    return RUNS[wildcards.family][wildcards.run]


def package_sources(*modules):
    """Modules a step runs, as inputs: editing one reruns the step (scripts are tracked anyway)."""
    return [str(PACKAGE_DIR / "mnistflow" / f"{module}.py") for module in modules]


def run_outputs(dataset, name):
    """One output file of every configured run."""
    return [
        f"results/{dataset}/{family}/{run}/{name}"
        for family, runs in RUNS.items()
        for run in runs
    ]


def report_html(dataset):
    return f"results/{dataset}/report.html"
