"""A scratch copy of the workflow, for the benchmarks (perf/) and the tests (tests/conftest.py).

Its one home is here, beside the benchmarks, because they run from a checkout without the
tests (nothing in perf/ imports from tests/); the tests import it from here. Standard
library only.
"""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# What a run of the workflow needs.
WORKFLOW_PARTS = ("Snakefile", "workflow", "config", "data", "profiles")


def copy_workflow(dest: Path) -> Path:
    """A scratch copy of the workflow in dest, so runs never write into the repository."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, dest / part)
    return dest
