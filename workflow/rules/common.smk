import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.sourcecache import HostingProviderFile, LocalSourceFile
from snakemake.utils import validate

# The workflow's logic lives in the package mnistflow beside the scripts. Run from a checkout,
# it is imported from there. Used as a module from git (snakedeploy's github()/gitlab()),
# Snakemake reads the scripts from its source cache and puts the cached scripts' folder on
# their search path (snakemake PR #1940); the package must be cached beside them, which
# Snakemake does not do by itself (snakemake issue #1632): workflow.source_path does it here.
LOCAL_WORKFLOW = isinstance(workflow.current_basedir, LocalSourceFile)


def _git_files(folder):
    """{name: bytes} of the files in a folder of the git-hosted workflow.

    Snakemake's source cache lists no folders and reads files as text, which fails on binary
    files (UnicodeEncodeError on the sample's .gz), so these come from its clone directly.
    """
    source = workflow.current_basedir.join(f"../../{folder}")
    if not isinstance(source, HostingProviderFile):
        raise WorkflowError(
            f"cannot read the workflow from {source}: use a local path, github() or gitlab()"
        )
    source.cache_path = Path(workflow.sourcecache.cache_path)
    repo = source.hosted_repo.repo
    names = repo.git.ls_tree("--name-only", f"{source.ref}:{source.path}").split()
    return {
        name: repo.git.show(
            f"{source.ref}:{source.path}/{name}",
            stdout_as_string=False,
            strip_newline_in_stdout=False,
        )
        for name in names
    }


def _cached_package_dir():
    """Cache the package from git; return the folder to import it from."""
    for name in _git_files("workflow/scripts/mnistflow"):
        if name.endswith(".py"):
            workflow.source_path(f"../scripts/mnistflow/{name}")
    return Path(workflow.source_path("../scripts/mnistflow/__init__.py")).parents[1]


def _cache_sample():
    """The bundled sample, where datasets.SAMPLE_DIR expects it beside the cached package."""
    for name, content in _git_files("data/mnist-sample").items():
        if not (datasets.SAMPLE_DIR / name).exists():
            with atomic.atomic_path(datasets.SAMPLE_DIR / name) as tmp:
                Path(tmp).write_bytes(content)


if LOCAL_WORKFLOW:
    PACKAGE_DIR = Path(workflow.current_basedir).parent / "scripts"
else:
    PACKAGE_DIR = _cached_package_dir()
sys.path.insert(0, str(PACKAGE_DIR))

from mnistflow import atomic, datasets, launch  # noqa: E402

if not LOCAL_WORKFLOW:
    _cache_sample()
    datasets.DATASETS["mnist-sample"] = datasets.mnist_sample()  # with its checksums

from mnistflow import settings  # noqa: E402

settings.check_config_files(workflow.configfiles)  # a key given twice
settings.validate_config(
    config, workflow.source_path("../schemas/config.schema.yaml"), validate
)

from mnistflow import containers  # noqa: E402


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


def package_sources(*modules):
    """Modules a step runs, as inputs: editing one reruns the step (scripts are tracked anyway).

    None for a workflow read from git: its tag pins the code, and the cached copies' paths
    change with every run for a branch, which would rerun every step.
    """
    if not LOCAL_WORKFLOW:
        return []
    return [str(PACKAGE_DIR / "mnistflow" / f"{module}.py") for module in modules]


def run_outputs(dataset, name):
    """One output file of every configured run that trains to the end (sweep.smk)."""
    return [
        f"results/{dataset}/{family}/{run}/{name}"
        for family, run in reported_runs(dataset)
    ]


def report_html(dataset):
    return f"results/{dataset}/report.html"


def train_runtime(wildcards, attempt):
    """Minutes: each retry of a job killed at its time limit asks for more (docs/resume.md)."""
    runtime = config["resources"]["train"]["runtime"]
    return min(runtime * attempt, max(runtime, config["checkpoint"]["max_runtime"]))


# How one training spreads over devices, processes and nodes (docs/distributed.md). Read with
# a default until the configuration schema carries the key everywhere.
DISTRIBUTION = config.get("distribution", dict(launch.DEFAULT_DISTRIBUTION))


def train_resources():
    """The train rule's gpu, plus for a distributed training its nodes and tasks.

    Snakemake's standard vocabulary (launch.job_resources): nodes, tasks (processes),
    gpu per node; each profile maps them (profiles/README.md). Mode none adds nothing.
    """
    gpu = config["resources"]["train"]["gpu"]
    try:
        extra = launch.job_resources(DISTRIBUTION, int(gpu or 0))
    except launch.LaunchError as e:
        raise WorkflowError(f"{e} (config/config.yaml or --config)") from None
    return {"gpu": gpu, **extra}
