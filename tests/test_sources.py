"""What makes a step rerun is derived from the imports (mnistflow.sources, package_sources in
workflow/rules/common.smk): every rule's inputs hold each mnistflow module its script imports,
directly or through each other, and training.CODE what the training module runs."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, copy_workflow
from mnistflow import sources

SCRIPTS = REPO / "workflow" / "scripts"
PACKAGE = SCRIPTS / "mnistflow"
RULES = sorted((REPO / "workflow" / "rules").glob("*.smk"))


def whole_tree_imports(path: Path) -> set[str]:
    """The oracle: mnistflow modules named by any import node of the file's whole tree."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("mnistflow.")}
        elif isinstance(node, ast.ImportFrom) and node.module == "mnistflow":
            names |= {a.name for a in node.names if (PACKAGE / f"{a.name}.py").exists()}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mnistflow."):
            names.add(node.module.split(".")[1])
    return names


def closure(path: Path) -> set[str]:
    found = {path.stem} if path.parent == PACKAGE else set()
    pending = [path]
    while pending:
        for name in whole_tree_imports(pending.pop()) - found:
            found.add(name)
            pending.append(PACKAGE / f"{name}.py")
    return found


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_imports_are_followed_through_modules_functions_and_every_import_form(tmp_path):
    package = tmp_path / "mnistflow"
    write(package / "__init__.py", "VERSION = 1\n")
    write(package / "a.py", "from mnistflow import b\nfrom . import c\n")
    write(package / "b.py", "def later():\n    from mnistflow.d import thing\n    return thing\n")
    write(package / "c.py", "import os\nfrom .e import (\n    x,\n    y,\n)\n")
    write(package / "d.py", "thing = 1\n")
    write(package / "e.py", "x = y = 2\n")
    write(package / "f.py", "import mnistflow.g as g\n")
    write(package / "g.py", "")
    write(package / "unused.py", "import mnistflow.a\n")
    script = write(
        tmp_path / "script.py",
        '"""Run it:\n\nfrom mnistflow import nothing like this\n"""\n'
        "import sys\nfrom mnistflow import VERSION, a\n\nif sys.argv:\n    import mnistflow.f\n",
    )
    assert sources.modules_used(script, package) == ["a", "b", "c", "d", "e", "f", "g"]
    assert sources.modules_used(package / "b.py", package) == ["b", "d"]
    assert sources.module_files(package / "f.py", package) == [package / "f.py", package / "g.py"]


@pytest.mark.parametrize(
    "path", sorted(SCRIPTS.glob("*.py")) + sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name
)
def test_reading_only_the_import_lines_finds_what_the_whole_tree_imports(path):
    assert sources.modules_used(path) == sorted(closure(path))


def test_the_training_code_fingerprint_covers_every_module_training_runs():
    from mnistflow import training

    expected = {PACKAGE / f"{name}.py" for name in closure(PACKAGE / "training.py")}
    assert {Path(p).resolve() for p in training.CODE} == expected
    assert {"models", "checkpoint", "distribution", "training"} <= {p.stem for p in expected}


def rule_blocks() -> dict[str, str]:
    blocks = {}
    for path in RULES:
        for match in re.finditer(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", path.read_text(), re.M):
            blocks[match.group(1)] = match.group(2)
    return blocks


def test_every_rule_with_a_script_derives_its_code_inputs_from_that_script():
    scripted = {}
    for rule, block in rule_blocks().items():
        script = re.search(r'script:\s*\n\s*"\.\./scripts/([\w.]+\.py)"', block)
        if script:
            scripted[rule] = script.group(1)
            assert f'code=package_sources("{script.group(1)}")' in block, (
                f"rule {rule} runs {script.group(1)} but its inputs lack "
                f'code=package_sources("{script.group(1)}") (see workflow/rules/common.smk)'
            )
    assert {"download", "preprocess", "train", "evaluate", "report", "export"} <= set(scripted)


def test_each_jobs_inputs_hold_every_module_its_script_imports(tmp_path):
    """Through the real snakemake CLI: a dry run lists each job's inputs."""
    work = copy_workflow(tmp_path / "workflow")
    (work / "sweep.yaml").write_text(
        yaml.safe_dump({"sweep": {"seeds": [0], "families": {"mlp": {"settings": [{}]}}}})
    )  # the study trains mlp; softmax's default run is exported
    (work / "models.yaml").write_text(yaml.safe_dump({"models": ["softmax", "mlp"]}))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--forceall", "--configfile", "sweep.yaml"]
        + ["models.yaml", "--config", "dataset=mnist-sample", "--"]
        + ["results/mnist-sample/report.html", "results/mnist-sample/softmax/default/saved_model"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = re.findall(r"^(?:local)?rule (\w+):\n    input: (.*)$", result.stdout, re.M)
    scripts = {
        rule: re.search(r'script:\s*\n\s*"\.\./scripts/([\w.]+\.py)"', block).group(1)
        for rule, block in rule_blocks().items()
        if "script:" in block
    }
    seen = set()
    for rule, inputs in jobs:
        if rule not in scripts:
            continue
        seen.add(rule)
        held = {Path(p).name for p in inputs.split(", ") if "/mnistflow/" in p}
        imported = {f"{name}.py" for name in closure(SCRIPTS / scripts[rule])}
        assert imported <= held, f"rule {rule} misses {sorted(imported - held)}"
        if rule == "evaluate":  # what the hand-kept list left out
            assert {"preprocess.py", "predictions.py", "evaluation.py"} <= held
    expected = {"download", "preprocess", "train", "evaluate", "export", "report"}
    assert expected | {"aggregate_sweep"} <= seen


def test_a_rule_naming_a_missing_script_stops_with_its_name(tmp_path):
    work = copy_workflow(tmp_path / "workflow")
    rules = work / "workflow" / "rules" / "export.smk"
    rules.write_text(
        rules.read_text().replace('package_sources("export.py")', 'package_sources("exprt.py")')
    )
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--config", "dataset=mnist-sample"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "package_sources('exprt.py'): no such script" in result.stdout + result.stderr
    shutil.rmtree(work)


# Read without the rest of the package: the scheduler tests' toy workflow copies the first
# three alone (tests/schedulers/schedtest.py), Snakemake reads sources while it parses.
STANDARD_LIBRARY_ONLY = (
    "launch",
    "place",
    "distribution_config",
    "sources",
    "hyperparameter_values",
)


def test_the_package_imports_form_layers_without_a_cycle():
    import graphlib

    graph = {path.stem: set(whole_tree_imports(path)) for path in PACKAGE.glob("*.py")}
    graphlib.TopologicalSorter(graph).prepare()  # CycleError on a cycle
    # No arrow back up: a process's place knows no launcher, the contract no settings.
    assert "place" in graph["launch"] and closure(PACKAGE / "place.py") == {"place"}
    assert "distribution_config" in graph["settings"]
    assert closure(PACKAGE / "distribution_config.py") == {"distribution_config"}
    for name in STANDARD_LIBRARY_ONLY:
        path = PACKAGE / f"{name}.py"
        assert whole_tree_imports(path) <= set(STANDARD_LIBRARY_ONLY), name
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                tops = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                tops = {node.module.split(".")[0]}
            else:
                continue
            assert tops <= sys.stdlib_module_names | {"__future__", "mnistflow"}, (name, tops)
