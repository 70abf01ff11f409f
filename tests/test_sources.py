"""What makes a step rerun is derived from the imports (mnistflow.sources, code_stamp in
workflow/rules/common.smk): every rule's code stamp, its one code input, holds each mnistflow
module its script imports, directly or through each other, and nothing else; editing one of
them reruns exactly the steps that run it; and training.CODE is what the training module runs."""

from __future__ import annotations

import ast
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
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
            assert f'code=code_stamp("{script.group(1)}")' in block, (
                f"rule {rule} runs {script.group(1)} but its inputs lack "
                f'code=code_stamp("{script.group(1)}") (see workflow/rules/common.smk)'
            )
    assert {"download", "preprocess", "train", "evaluate", "report", "export"} <= set(scripted)


def dry_run(work: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", *args],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


# A study trains mlp (one job per run, train_study, which runs train.py then evaluate.py);
# softmax's default run is trained, evaluated and exported as single steps.
STUDY = {"sweep": {"seeds": [0], "families": {"mlp": {"settings": [{}]}}}}
MODELS = {"models": ["softmax", "mlp"]}
TARGETS = ["results/mnist-sample/report.html", "results/mnist-sample/softmax/default/saved_model"]


def study_workflow(tmp_path: Path) -> Path:
    work = copy_workflow(tmp_path / "workflow")
    (work / "sweep.yaml").write_text(yaml.safe_dump(STUDY))
    (work / "models.yaml").write_text(yaml.safe_dump(MODELS))
    return work


STUDY_ARGS = ["--configfile", "sweep.yaml", "models.yaml", "--config", "dataset=mnist-sample"]


def stamped_files(work: Path, inputs: str) -> set[str]:
    """The files (paths below workflow/scripts) that a job's one code stamp covers."""
    stamps = [p for p in inputs.split(", ") if p.startswith(".snakemake/mnistflow-code/")]
    assert len(stamps) == 1, inputs
    assert "/mnistflow/" not in inputs  # no module as an input of its own
    lines = (work / stamps[0]).read_text().splitlines()
    for line in lines:
        digest, path = line.split("  ")
        assert digest == hashlib.sha256((SCRIPTS / path).read_bytes()).hexdigest(), path
    return {line.split("  ")[1] for line in lines}


def test_each_jobs_code_stamp_covers_exactly_the_modules_its_scripts_import(tmp_path):
    """Through the real snakemake CLI: a dry run lists each job's inputs."""
    work = study_workflow(tmp_path)
    out = dry_run(work, "--forceall", *STUDY_ARGS, "--", *TARGETS)
    # A group job's (the study's) rules are indented.
    jobs = re.findall(r"^\s*(?:local)?rule (\w+):\n\s+input: (.*)$", out, re.M)
    scripts = {
        rule: [re.search(r'script:\s*\n\s*"\.\./scripts/([\w.]+\.py)"', block).group(1)]
        for rule, block in rule_blocks().items()
        if "script:" in block
    }
    scripts["train_study"] = ["train.py", "evaluate.py"]  # use rule train as train_study
    seen = set()
    for rule, inputs in jobs:
        if rule not in scripts:
            continue
        seen.add(rule)
        expected = set(scripts[rule])
        for script in scripts[rule]:
            expected |= {f"mnistflow/{name}.py" for name in closure(SCRIPTS / script)}
        held = stamped_files(work, inputs)
        assert held == expected, (
            f"rule {rule}: misses {sorted(expected - held)}, extra {sorted(held - expected)}"
        )
        if rule == "evaluate":  # what the hand-kept list left out
            assert {"mnistflow/preprocess.py", "mnistflow/evaluation.py"} <= held
    expected = {"download", "preprocess", "train", "evaluate", "export", "report"}
    assert expected | {"aggregate_sweep", "train_study"} <= seen


def planned(work: Path) -> list[str]:
    """The jobs a dry run of the study plans, by rule."""
    out = dry_run(work, *STUDY_ARGS, "--", *TARGETS)
    if "Nothing to be done" in out:
        return []
    table = out.split("Job stats:")[1].split("total")[0]
    return sorted(re.findall(r"^(\w+)\s+\d+$", table, re.M))


def touch_outputs(work: Path) -> None:
    """Mark the study's outputs up to date (``snakemake --touch``), as after a run."""
    subprocess.run(
        [sys.executable, "-m", "snakemake", "--touch", "-c1", *STUDY_ARGS, "--", *TARGETS],
        cwd=work,
        check=True,
        capture_output=True,
        timeout=300,
    )


def test_editing_code_reruns_exactly_the_steps_that_run_it(tmp_path):
    """Every output made (empty files, then `snakemake --touch`): then a dry run plans exactly
    the steps whose scripts run an edited file, and what depends on them."""
    work = study_workflow(tmp_path)
    plan = dry_run(work, *STUDY_ARGS, "--", *TARGETS)
    for listed in re.findall(r"^\s+(?:output|log|benchmark): (.*)$", plan, re.M):
        for path in listed.split(", "):
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).touch()
    touch_outputs(work)
    assert planned(work) == []
    scripts = work / "workflow" / "scripts"

    # The stamps deleted (say with .snakemake): written anew, with the covered files' times.
    shutil.rmtree(work / ".snakemake" / "mnistflow-code")
    assert planned(work) == []

    # A module touched, or checked out again unchanged: its content decides, not its mtime.
    (scripts / "mnistflow" / "models.py").touch()
    assert planned(work) == []

    # evaluation.py runs in the single runs' evaluate and in the study's train_study, not
    # in the single run's training nor its export.
    evaluation = scripts / "mnistflow" / "evaluation.py"
    evaluation.write_text(evaluation.read_text() + "\n# an edit\n")
    downstream = ["aggregate_sweep", "report"]
    assert planned(work) == sorted(["evaluate", "train_study", *downstream])
    touch_outputs(work)  # the new outputs, as after a run
    assert planned(work) == []

    # The study's second script, which Snakemake does not track itself: in the stamp.
    script = scripts / "evaluate.py"
    script.write_text(script.read_text() + "\n# an edit\n")
    assert planned(work) == sorted(["evaluate", "train_study", *downstream])


def test_a_code_stamp_is_rewritten_only_when_a_file_it_covers_changes(tmp_path):
    package = tmp_path / "scripts" / "mnistflow"
    write(package / "a.py", "from mnistflow import b\n")
    write(package / "b.py", "B = 1\n")
    write(package / "c.py", "C = 1\n")
    script = write(tmp_path / "scripts" / "step.py", "from mnistflow import a\n")
    stamp = tmp_path / ".snakemake" / "mnistflow-code" / "step.sha256"
    newest = time.time_ns() + 86_400 * 10**9  # a day ahead: b.py is the newest covered file
    os.utime(package / "b.py", ns=(newest, newest))

    assert sources.write_code_stamp(stamp, [script], package) == stamp
    assert stamp.stat().st_mtime_ns == newest  # written anew: the newest file's time
    digest = {
        path: hashlib.sha256((tmp_path / "scripts" / path).read_bytes()).hexdigest()
        for path in ("mnistflow/a.py", "mnistflow/b.py", "step.py")
    }
    assert stamp.read_text() == "".join(f"{digest[p]}  {p}\n" for p in sorted(digest))
    written = stamp.stat()

    (package / "b.py").touch()  # same content
    write(package / "c.py", "C = 2\n")  # not run by the step
    sources.write_code_stamp(stamp, [script], package)
    assert (stamp.stat().st_ino, stamp.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)

    write(package / "b.py", "B = 2\n")
    before = time.time_ns()
    sources.write_code_stamp(stamp, [script], package)
    assert stamp.stat().st_ino != written.st_ino  # replaced by a rename, never half-written
    assert before - 10**9 <= stamp.stat().st_mtime_ns < newest - 10**9  # changed code: now
    new_b = hashlib.sha256(b"B = 2\n").hexdigest()
    assert f"{new_b}  mnistflow/b.py\n" in stamp.read_text()
    assert [p.name for p in stamp.parent.iterdir()] == ["step.sha256"]


def test_a_rule_naming_a_missing_script_stops_with_its_name(tmp_path):
    work = copy_workflow(tmp_path / "workflow")
    rules = work / "workflow" / "rules" / "export.smk"
    rules.write_text(rules.read_text().replace('code_stamp("export.py")', 'code_stamp("exprt.py")'))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--config", "dataset=mnist-sample"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "code_stamp('exprt.py'): no such script" in result.stdout + result.stderr
    shutil.rmtree(work)


# Read without the rest of the package: the scheduler tests' toy workflow copies the first
# three alone (tests/schedulers/schedtest.py), Snakemake reads sources while it parses.
STANDARD_LIBRARY_ONLY = (
    "atomic",
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
