"""Containers (``--sdm apptainer``): refuse to start without a runtime or an image.

Snakemake 9.27 finds a missing ``apptainer`` only when it builds the DAG, and a missing local
image only when the first containerised job runs: on a cluster, after the jobs before it have
queued and run. Checked while the Snakefile is read, nothing is submitted in either case.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

RUNTIMES = ("apptainer", "singularity")  # the order Snakemake tries them in
BUILD = "apptainer build --fakeroot {image} workflow/envs/tensorflow.def"


class ContainerError(RuntimeError):
    """The container route cannot run; the message says what to install or build."""


def is_local(image: str) -> bool:
    """A path, not a URI Apptainer pulls (docker://, oras://, library://, shub://)."""
    return "://" not in image


def check(image: str, workdir: Path | str = ".", which=shutil.which) -> str:
    """The runtime's name, or ContainerError naming what is missing and how to get it."""
    runtime = next((name for name in RUNTIMES if which(name)), None)
    if runtime is None:
        raise ContainerError(
            "--sdm apptainer: neither apptainer nor singularity is on PATH. Install Apptainer "
            "(or `module load apptainer` on a cluster), or run without --sdm apptainer to use "
            "the conda environments (docs/containers.md)."
        )
    if is_local(image):
        path = Path(workdir, image)
        if not path.is_file():
            raise ContainerError(
                f"--sdm apptainer: the image {image!r} (config key `container`) is not at "
                f"{path.absolute()}. Build it from the repository's top level:\n"
                f"  {BUILD.format(image=image)}\n"
                "or set `container:` to the image's path (on shared storage for a cluster); "
                "see docs/containers.md."
            )
    return runtime


def wanted(deployment_settings) -> bool:
    """Whether Snakemake runs with --sdm apptainer (workflow.deployment_settings)."""
    methods = getattr(deployment_settings, "deployment_method", None) or ()
    return any(str(getattr(m, "name", m)).lower() == "apptainer" for m in methods)


def where() -> str:
    """A log line: the image this process runs in (Apptainer/Singularity), or none."""
    image = os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER")
    if not (image and Path("/.singularity.d").is_dir()):
        image = "none"
    return f"container: {image} (python {sys.executable})"
