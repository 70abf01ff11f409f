# Where the package mnistflow is imported from, for a checkout and for a deployment from git.
# Included first (workflow/Snakefile): every other rule file imports mnistflow.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.sourcecache import HostingProviderFile, LocalSourceFile

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

from mnistflow import atomic, datasets  # noqa: E402

if not LOCAL_WORKFLOW:
    _cache_sample()
    datasets.DATASETS["mnist-sample"] = datasets.mnist_sample()  # with its checksums
