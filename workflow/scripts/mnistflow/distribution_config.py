"""The configuration's ``distribution``: which settings fit together, and the train job's resources.

One home for the contract between ``distribution`` (docs/distributed.md) and the rest of the
workflow: settings.validate_config reports :func:`errors` with the other configuration
errors, and :func:`job_resources` turns a valid setting into the train rule's resources.
The defaults are the schema's (workflow/schemas/config.schema.yaml), filled in by the
validation before anything here reads the key: every function takes all of ``KEYS``.

The run-time side is elsewhere: mnistflow.distribution joins the processes and splits the
batches, mnistflow.place tells a process its place, mnistflow.launch starts the processes.
Standard library only: the scheduler tests' toy workflow imports it without the others.
"""

from __future__ import annotations

from collections.abc import Mapping

KEYS = ("mode", "processes", "nodes", "devices")
MODES = ("none", "devices", "processes")
# Named in the train rule's `mpi` resource: the rule starts its processes itself.
LAUNCHER = "mnistflow.launch"


class DistributionConfigError(ValueError):
    """A distribution setting the workflow cannot run; the message names the key and the fix."""


def _values(distribution: Mapping) -> tuple[str, int, int, int]:
    missing = [key for key in KEYS if key not in distribution]
    if missing:
        raise DistributionConfigError(
            f"distribution lacks {', '.join(missing)}: pass the validated configuration's "
            "distribution (settings.validate_config fills the schema's defaults)"
        )
    mode, processes, nodes, devices = (distribution[key] for key in KEYS)
    return mode, int(processes), int(nodes), int(devices)


def shape_errors(distribution: Mapping) -> list[str]:
    """What does not fit together in mode, processes, nodes and devices, one line each
    ("distribution.<key>: ...", naming the fix)."""
    mode, processes, nodes, devices = _values(distribution)
    if mode not in MODES:
        return [f"distribution.mode: {mode!r} is not one of {', '.join(MODES)}"]
    small = [(k, v) for k, v in zip(KEYS[1:], (processes, nodes, devices), strict=True) if v < 1]
    if small:
        return [f"distribution.{key}: {value} must be at least 1" for key, value in small]
    lines = []
    if mode == "none":
        for key, value in (("processes", processes), ("devices", devices), ("nodes", nodes)):
            if value != 1:
                lines.append(
                    f"distribution.{key}: {value} needs distribution.mode: "
                    f"{'processes' if key != 'devices' else 'devices'} (with mode none it "
                    "must be 1); set the mode, or remove the key"
                )
    elif mode == "devices":
        for key, value in (("processes", processes), ("nodes", nodes)):
            if value != 1:
                lines.append(
                    f"distribution.{key}: {value}, but mode devices is one process on one "
                    "node; set it to 1, or distribution.mode: processes"
                )
    elif nodes > processes:
        lines.append(
            f"distribution.nodes: {nodes} nodes for {processes} processes leaves nodes "
            "idle; set distribution.nodes to at most distribution.processes"
        )
    elif processes % nodes:
        lines.append(
            f"distribution.processes: {processes} processes do not divide evenly over {nodes} "
            "nodes: make processes a multiple of nodes (every node runs as many)"
        )
    return lines


def errors(distribution: Mapping, backend: str) -> list[str]:
    """shape_errors(), and a distributed mode with a backend other than JAX."""
    mode = distribution.get("mode")
    lines = []
    if mode != "none" and backend != "jax":
        lines.append(
            f"distribution.mode: {mode!r} needs compute.backend: jax (it is {backend!r}); "
            "set compute.backend: jax (pip install jax), or distribution.mode: none "
            "(TensorFlow's multi-worker training is broken with Keras 3: keras-team/keras#20585)"
        )
    return lines + shape_errors(distribution)


def job_resources(distribution: Mapping, gpu: int) -> dict[str, int | str]:
    """The train rule's extra resources for a distribution setting (nothing for mode none).

    In Snakemake's standard vocabulary (nodes, tasks, gpu), which each profile maps to its
    scheduler's options (profiles/README.md). gpu: the GPUs the configuration asks for
    (resources.train.gpu). With GPUs, the job asks for devices x processes / nodes per node;
    without, none. mode processes adds nodes and tasks (processes), and for more than one
    process `mpi` (the rule starts its processes itself: the SLURM plugin then runs the rule
    in the batch step, not a one-task step) and `tasks_per_gpu: 0` (else the plugin asks for
    tasks x gpu tasks). A setting shape_errors() refuses raises DistributionConfigError.
    """
    problems = shape_errors(distribution)
    if problems:
        raise DistributionConfigError("; ".join(problems))
    mode, processes, nodes, devices = _values(distribution)
    if mode == "none":
        return {}
    resources: dict[str, int | str] = {}
    if gpu > 0:
        resources["gpu"] = devices * processes // nodes
    if mode == "processes":
        resources["nodes"] = nodes
        resources["tasks"] = processes
        if processes > 1:
            resources["mpi"] = LAUNCHER
            if gpu > 0:
                resources["tasks_per_gpu"] = 0
    return resources
