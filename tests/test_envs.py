"""The software the steps run with is what was tested.

constraints.txt pins every package the tests ran with (tests/lock.py writes it). The conda
environments and the container's package list must pin the same versions, hold everything
their packages need, and hold every package their steps import, at any depth (found by reading
the step's script and the mnistflow modules it uses, so imports inside functions count too).
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
import yaml
from packaging.markers import Marker

from conftest import REPO
from lock import closure, normalise

ENVS = REPO / "workflow" / "envs"
PACKAGE = REPO / "workflow" / "scripts" / "mnistflow"
CONTAINER_LIST = ENVS / "tensorflow-container.txt"


def read_names(lines) -> list[str]:
    return [normalise(n) for line in lines if (n := line.split("#")[0].strip())]


# What tensorflow.def installs (CPU build): TensorFlow (a build argument) and the list, each
# at its constraints.txt pin; tests/test_container.py checks the built image holds exactly these.
CONTAINER_PACKAGES = ["tensorflow-cpu", *read_names(CONTAINER_LIST.read_text().splitlines())]


def read_pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        line, _, marker = line.split("#")[0].partition(";")
        line = line.strip()
        if marker.strip() and not Marker(marker).evaluate():
            continue  # for another machine (tensorflow on aarch64): test_aarch64_resolution.py
        if line and not line.startswith("-"):
            name, version = line.split("==")
            pins[normalise(name)] = version
    return pins


CONSTRAINTS = read_pins((REPO / "constraints.txt").read_text().splitlines())


def conda_pins(name: str) -> dict[str, str]:
    dependencies = yaml.safe_load((ENVS / name).read_text())["dependencies"]
    pip = next(d["pip"] for d in dependencies if isinstance(d, dict))
    return read_pins(pip)


PACKAGE_LISTS = {
    "python.yaml": lambda: conda_pins("python.yaml"),
    "tensorflow.yaml": lambda: conda_pins("tensorflow.yaml"),
    "container": lambda: {n: CONSTRAINTS[n] for n in closure(CONTAINER_PACKAGES)},
}


@pytest.mark.parametrize("listing", PACKAGE_LISTS)
def test_package_lists_pin_the_tested_versions_and_are_complete(listing):
    pins = PACKAGE_LISTS[listing]()
    assert pins, listing
    for name, version in pins.items():
        assert CONSTRAINTS.get(name) == version, (listing, name, version)
    missing = set(closure(list(pins))) - set(pins)
    assert not missing, f"{listing} lacks what its packages depend on: {sorted(missing)}"


def test_conda_envs_pin_python_and_pip():
    for name in ("python.yaml", "tensorflow.yaml"):
        dependencies = yaml.safe_load((ENVS / name).read_text())["dependencies"]
        python = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
        assert f"python ={python}" in dependencies, name
        assert any(re.fullmatch(r"pip =[\d.]+", str(d)) for d in dependencies), name


def step_environments() -> dict[str, dict]:
    """Rule name -> its script, conda env file and whether it runs in the container."""
    steps = {}
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"\n(?=rule \w+:)", smk.read_text()):
            rule = re.match(r"rule (\w+):", block)
            script = re.search(r'script:\s*\n\s*"\.\./scripts/(\w+\.py)"', block)
            if rule and script:
                conda = re.search(r'conda:\s*\n\s*"\.\./envs/([\w.]+)"', block)
                steps[rule.group(1)] = {
                    "script": REPO / "workflow" / "scripts" / script.group(1),
                    "conda": conda and conda.group(1),
                    "container": "container:" in block,
                }
    return steps


STEPS = step_environments()


def _definitions(tree) -> dict[str, ast.AST]:
    return {
        node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))
    }


def _walk_outside_definitions(tree):
    """Module-level nodes: what runs on import (function and class bodies run when used)."""
    pending = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    while pending:
        node = pending.pop()
        yield node
        pending += list(ast.iter_child_nodes(node))


def imported_distributions(script: Path) -> set[str]:
    """Distributions a step imports: its script's imports, the mnistflow modules it loads and
    the functions of them it can reach, including imports inside those functions."""
    distributions = importlib.metadata.packages_distributions()
    trees = {m.stem: ast.parse(m.read_text()) for m in PACKAGE.glob("*.py")}
    trees["<script>"] = ast.parse(script.read_text())
    names = {module: {} for module in trees}  # module -> {local name: (module, definition)}
    for module, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "mnistflow":
                for alias in node.names:
                    names[module][alias.asname or alias.name] = (alias.name, None)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mnistflow."):
                for alias in node.names:
                    names[module][alias.asname or alias.name] = (node.module[10:], alias.name)
        for name in _definitions(tree):
            names[module][name] = (module, name)

    found, seen, pending = set(), set(), [("<script>", None)]
    while pending:
        unit = pending.pop()
        if unit in seen:
            continue
        seen.add(unit)
        module, definition = unit
        tree = trees[module]
        nodes = (
            _walk_outside_definitions(tree)
            if definition is None
            else ast.walk(_definitions(tree)[definition])
        )
        for node in nodes:
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                imported = [node.module]
            else:
                imported = []
            for name in imported:
                top = name.split(".")[0]
                if top == "mnistflow":
                    pending.append((name.split(".")[1], None) if "." in name else unit)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    found |= {normalise(d) for d in distributions[top]}
            if isinstance(node, ast.Name) and node.id in names[module]:
                target, target_definition = names[module][node.id]
                pending.append((target, None))
                if target_definition in _definitions(trees[target]):  # not a constant
                    pending.append((target, target_definition))
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                target, target_definition = names[module].get(node.value.id, (None, 1))
                if target_definition is None and node.attr in _definitions(trees[target]):
                    pending.append((target, node.attr))
    return found


def test_every_step_has_an_environment():
    assert {"download", "preprocess", "train", "evaluate", "report"} <= set(STEPS)
    for rule, step in STEPS.items():
        assert step["conda"], f"rule {rule} has no conda: environment"


@pytest.mark.parametrize("rule", sorted(STEPS))
def test_each_step_imports_only_what_its_environments_hold(rule):
    step = STEPS[rule]
    imported = imported_distributions(step["script"]) - {"snakemake"}  # Snakemake brings it
    held = set(conda_pins(step["conda"]))
    assert imported <= held, f"{step['conda']} lacks {sorted(imported - held)} for {rule}"
    if step["container"]:
        # jax is a build argument of the image (docs/containers.md); without it, compute.backend
        # jax stops the step at once with runtime.BackendError's install hint (docs/gpu.md).
        container = set(PACKAGE_LISTS["container"]()) | {"jax"}
        assert imported <= container, f"container lacks {sorted(imported - container)}"


def test_only_the_tensorflow_steps_run_in_the_container_and_the_import_check_has_teeth():
    """Evaluate scores saved predictions without TensorFlow, so only train and the on-demand
    export and prediction of new images need the image; the check above would catch a
    container step importing what the image lacks (evaluate's matplotlib)."""
    in_container = sorted(rule for rule, step in STEPS.items() if step["container"])
    assert in_container == ["export", "predict_images", "train", "train_rung"]
    container = set(PACKAGE_LISTS["container"]())
    assert "matplotlib" in imported_distributions(STEPS["evaluate"]["script"]) - container


def test_definition_file_installs_the_package_list_at_the_constraints_pins():
    definition = (ENVS / "tensorflow.def").read_text()
    assert "workflow/envs/tensorflow-container.txt /opt/mnistflow/requirements.txt" in definition
    assert "constraints.txt /opt/mnistflow/constraints.txt" in definition
    assert "-c /opt/mnistflow/constraints.txt -c /opt/mnistflow/constraints-gpu.txt" in definition
    assert "-r /opt/mnistflow/requirements.txt" in definition
    # TensorFlow is a build argument (tensorflow-cpu or tensorflow[and-cuda]) at the tested version.
    version = CONSTRAINTS["tensorflow-cpu"]
    assert '"{{ tensorflow }}==' + version + '"' in definition
    assert "    tensorflow=tensorflow-cpu\n" in definition
    assert "pip check" in definition
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert config["container"] == "mnist-tensorflow.sif"
    build = "apptainer build --fakeroot mnist-tensorflow.sif workflow/envs/tensorflow.def"
    assert build in definition


def test_gpu_pins_add_only_what_constraints_lack():
    """The GPU builds' extra pins never override a tested CPU pin (TensorFlow: same version)."""
    gpu = read_pins((ENVS / "tensorflow-gpu.txt").read_text().splitlines())
    assert gpu["tensorflow"] == CONSTRAINTS["tensorflow-cpu"]
    assert gpu["jax-cuda12-plugin"] == CONSTRAINTS["jax"]
    assert not set(gpu) & set(CONSTRAINTS)
    assert all(n.startswith(("nvidia-", "jax-cuda12-")) for n in gpu if n != "tensorflow")
