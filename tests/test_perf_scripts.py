"""The benchmarks (perf/) run from a checkout without the tests: nothing in perf/ imports from
tests/, and perf's scratch copy of the workflow holds what the tests' copy holds."""

from __future__ import annotations

import ast
import subprocess
import sys

import conftest
from conftest import REPO

PERF = REPO / "perf"
TEST_MODULES = {path.stem for path in (REPO / "tests").rglob("*.py")}


def test_no_benchmark_imports_from_the_tests():
    for path in sorted(PERF.glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and not node.level
        }
        assert not imported & (TEST_MODULES | {"tests"}), f"{path.name} imports from tests/"
        assert '"tests"' not in path.read_text(), f"{path.name} puts tests/ on its path"


def test_the_benchmarks_copy_the_workflow_as_the_tests_do(tmp_path):
    """In a process of its own, as `python perf/run.py` runs: perf/ first on the path.

    One copy_workflow (perf/workflow_copy.py) serves both, and works without the tests."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import run; "
        "print(run.copy_workflow.__code__.co_filename); "
        "run.copy_workflow(__import__('pathlib').Path(sys.argv[2]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(PERF), str(tmp_path / "copy")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip() == conftest.copy_workflow.__code__.co_filename
    assert result.stdout.strip() == str(PERF / "workflow_copy.py")
    copied = sorted(p.relative_to(tmp_path / "copy") for p in (tmp_path / "copy").rglob("*"))
    reference = conftest.copy_workflow(tmp_path / "reference")
    assert copied == sorted(p.relative_to(reference) for p in reference.rglob("*"))
    assert (tmp_path / "copy" / "workflow" / "Snakefile").is_file()
