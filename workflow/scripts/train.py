"""Snakemake script: train one run (see mnistflow.training), resuming from a checkpoint.

With ``distribution.mode: processes`` the training runs as that many worker processes
(mnistflow.worker), started by mnistflow.launch with the launcher the job offers; this
script waits for them and exits with their worst exit code.
"""

import os
import sys
from pathlib import Path

from mnistflow import containers, runtime

runtime.log_to(snakemake.log[0])
print(containers.where(), flush=True)  # which software ran: the image or the host's
# Loaded by --sdm env-modules (config envmodules) or the profiles' MNIST_JOB_MODULES.
print(f"environment modules: {os.environ.get('LOADEDMODULES') or 'none'}", flush=True)
hyperparameters = snakemake.params.hyperparameters
# Read from the config, not params: checkpoint settings do not change the result, so
# editing them must not rerun finished trainings; nor does the distribution (the weights
# match a single device's to float32 round-off; docs/distributed.md).
checkpoints = snakemake.config["checkpoint"]
tensorboard = snakemake.config["tensorboard"]  # nor do the event files (docs/tensorboard.md)
spread = snakemake.config["distribution"]  # complete: the schema's defaults are filled in
wildcards = snakemake.wildcards
run_path = Path(wildcards.dataset, wildcards.family, wildcards.run)
# A successive-halving rung (rule train_rung): stop after its epochs, keep the checkpoint,
# write only the history so far; the other outputs come with the run's last rung.
rung = snakemake.params.get("stop_at_epoch")
outputs = snakemake.output
arguments = dict(
    data=snakemake.input.data,
    family=wildcards.family,
    hp=hyperparameters,
    param_hdf5=None if rung else outputs.param,
    model_keras=None if rung else outputs.model,
    history=outputs.history,
    predictions_npz=None if rung else outputs.predictions,
    stop_at_epoch=rung,
    run=wildcards.run,
    checkpoints=str(Path(checkpoints["directory"], run_path)),
    checkpoints_root=checkpoints["directory"],
    every_epochs=checkpoints["every_epochs"],
    every_minutes=checkpoints["every_minutes"],
    tensorboard=str(Path(tensorboard["directory"], run_path)) if tensorboard["enabled"] else None,
)


def evaluate_if_study_run():
    """A study run's job (rule train_study, workflow/rules/evaluate.smk) evaluates the run
    too: evaluate.py, as the evaluate rule runs it, with the evaluate log and the predictions
    this training wrote. The script lies beside the package (workflow/rules/deployment.smk)."""
    if "evaluate" not in snakemake.log.keys():
        return
    import runpy
    from types import SimpleNamespace

    import mnistflow
    from mnistflow import datasets

    step = SimpleNamespace(**vars(snakemake))
    step.input = SimpleNamespace(data=snakemake.input.data, predictions=outputs.predictions)
    step.params = SimpleNamespace(
        hyperparameters=hyperparameters,
        class_names=datasets.get_dataset(wildcards.dataset).class_names,
    )
    step.log = [snakemake.log.evaluate]
    script = Path(mnistflow.__file__).resolve().parents[1] / "evaluate.py"
    runpy.run_path(str(script), init_globals={"snakemake": step}, run_name="__main__")


if spread["mode"] == "processes":
    from mnistflow import launch, worker

    processes, nodes = spread["processes"], spread["nodes"]
    # On shared storage beside the log, so that workers on other nodes read it too.
    args_file = worker.write_arguments(
        Path(snakemake.log[0]).with_suffix(".worker.json"),
        {
            "train": arguments,
            "compute": snakemake.params.compute,
            "processes": processes,
            "devices": spread["devices"],
            # Per process, as the profiles ask the scheduler for them (threads x tasks
            # CPUs: SLURM's --cpus-per-task, PBS ncpus, Grid Engine slots).
            "threads": snakemake.threads,
        },
    )
    scripts = str(Path(worker.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [scripts, env.get("PYTHONPATH")]))
    code = launch.run_workers(
        processes, [sys.executable, "-m", "mnistflow.worker", str(args_file)], env, nodes=nodes
    )
    if code == 0:
        args_file.unlink(missing_ok=True)
        evaluate_if_study_run()
    sys.exit(code)

runtime.configure(
    snakemake.threads,
    seed=hyperparameters["seed"],
    **snakemake.params.compute,
    cpu_devices=spread["devices"],
)

from mnistflow import distribution, numerics, preprocess, stopping, training  # noqa: E402  (imports Keras: after configure)

try:
    training.train(**arguments, spread=distribution.setup(spread["mode"], None, spread["devices"]))
except stopping.Stopped as stop:
    print(f"{stop}; rerun (or let the scheduler retry) to resume.", flush=True)
    sys.exit(stop.exit_code)
except (numerics.NonFiniteTraining, preprocess.DataFileError) as error:
    sys.exit(f"ERROR: {error}")  # the message is the whole story: no traceback
evaluate_if_study_run()
