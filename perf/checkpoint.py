"""Cost of checkpointing and of a kill, on the cnn's default training on the real MNIST.

    python perf/checkpoint.py --mnist ../shared/data/mnist [--repeats 3]

Each training runs in a fresh process (2 threads, the configured seed), as the train job does:
1. checkpoints off, 2. the default intervals (after every epoch, and every 10 minutes),
3. for scale, one fit() call over all epochs with Keras' own shuffling (the training before
   resume support). Target: the time run 2 spends checkpointing (fingerprint, saves,
   clean-up, timed within that run, so other load on the machine cancels out) <= 3% of its
   training time.
Then the parts of what a kill costs: the start-up of a resumed job (process start to the
first training step, restore included), and one save. A kill loses the work since the last
save (at most one save interval) plus that start-up. Prints medians (and ranges).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))

import yaml  # noqa: E402

DEFAULTS = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
HP = {**DEFAULTS["hyperparameters"]["cnn"], "seed": DEFAULTS["seed"]}
INTERVALS = DEFAULTS["checkpoint"]


def prepare(mnist: Path, scratch: Path) -> Path:
    from mnistflow import preprocess
    from mnistflow.datasets import IDX_FILENAMES

    raw = {role: mnist / name for role, name in IDX_FILENAMES.items()}
    data = scratch / "data.h5"
    preprocess.preprocess(raw, data, dataset="mnist", validation_size=5000, seed=0)
    return data


def train_cnn(data: str, out: Path, **options) -> None:
    """The cnn's training with HP, its outputs in out, its log dropped (after runtime.configure)."""
    from mnistflow import training

    training.train(
        data,
        "cnn",
        HP,
        param_hdf5=out / "p.hdf5",
        model_keras=out / "m.keras",
        history=out / "h.csv",
        log=lambda line: None,
        **options,
    )


def one(variant: str, data: str, scratch: str) -> dict:
    """In this (fresh) process: train once, return seconds."""
    started = time.perf_counter()
    from mnistflow import runtime

    runtime.configure(2, seed=HP["seed"])
    import keras

    from mnistflow import checkpoint, models, preprocess

    out = Path(scratch)
    result = {}
    if variant == "single_fit":
        x, y = preprocess.load_split(data, "train")
        val = preprocess.load_split(data, "val")
        model = models.build_model("cnn", HP)
        models.compile_model(model, HP, -(-len(y) // HP["batch_size"]))
        began = time.perf_counter()
        model.fit(
            models.reshape_for(model, x),
            y,
            batch_size=HP["batch_size"],
            epochs=HP["epochs"],
            validation_data=(models.reshape_for(model, val[0]), val[1]),
            callbacks=[keras.callbacks.SwapEMAWeights()],
            verbose=0,
        )
        result["train"] = time.perf_counter() - began
        return result
    if variant == "startup":  # a resumed job: from process start to its first step
        first_step = {}

        class FirstStep(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                first_step.setdefault("at", time.perf_counter())
                raise KeyboardInterrupt  # measured: stop here

        try:
            train_cnn(data, out, checkpoints=out / "ckpt", callbacks=(FirstStep(),))
        except KeyboardInterrupt:
            pass
        result["startup"] = first_step["at"] - started
        return result
    if variant == "save":  # one save of the whole state after a first epoch
        store = checkpoint.Store(out / "ckpt", {"run": "perf"}, log=lambda line: None)
        model = models.build_model("cnn", HP)
        models.compile_model(model, HP, 430)
        x, y = preprocess.load_split(data, "val")
        model.fit(models.reshape_for(model, x), y, batch_size=128, verbose=0)
        times = []
        for _ in range(5):
            began = time.perf_counter()
            store.save(
                checkpoint.State(0, 1, 1, variables=checkpoint.capture(model, with_metrics=True))
            )
            times.append(time.perf_counter() - began)
        result["save"] = statistics.median(times)
        result["bytes"] = store.files()[0].stat().st_size
        return result
    if variant == "defaults":  # time spent checkpointing, within this very run
        result["checkpointing"] = 0.0

        def timed(function):
            def wrapper(*args, **kwargs):
                began = time.perf_counter()
                try:
                    return function(*args, **kwargs)
                finally:
                    result["checkpointing"] += time.perf_counter() - began

            return wrapper

        checkpoint.fingerprint = timed(checkpoint.fingerprint)
        for name in ("save", "load", "clear"):
            setattr(checkpoint.Store, name, timed(getattr(checkpoint.Store, name)))
    options = {
        "checkpoints": out / "ckpt",
        **{k: INTERVALS[k] for k in ("every_epochs", "every_minutes")},
    }
    if variant == "off":
        options = {}
    began = time.perf_counter()
    train_cnn(data, out, **options)
    result["train"] = time.perf_counter() - began
    return result


def run_one(variant: str, data: Path, scratch: Path) -> dict:
    work = Path(tempfile.mkdtemp(dir=scratch))
    if variant == "startup":  # a checkpoint to resume from: one epoch's state
        subprocess.run(
            [sys.executable, __file__, "--one", "save-epoch", str(data), str(work)], check=True
        )
    out = subprocess.run(
        [sys.executable, __file__, "--one", variant, str(data), str(work)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def save_epoch(data: str, scratch: str) -> None:
    """Train the first epoch with checkpoints, then stop as a SIGTERM does: leaves the
    checkpoint a resume starts from."""
    import os
    import signal

    from mnistflow import runtime

    runtime.configure(2, seed=HP["seed"])
    import keras

    from mnistflow import stopping

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            os.kill(os.getpid(), signal.SIGTERM)

    out = Path(scratch)
    try:
        train_cnn(data, out, checkpoints=out / "ckpt", callbacks=(StopAfterFirstEpoch(),))
    except stopping.Stopped:
        pass


def summary(values: list[float], unit: str = "s") -> str:
    return f"{statistics.median(values):.2f} {unit} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=REPO.parent / "shared" / "data" / "mnist")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        variant, data, scratch = args.one
        if variant == "save-epoch":
            return save_epoch(data, scratch)
        print(json.dumps(one(variant, data, scratch)))
        return None
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        data = prepare(args.mnist, scratch)
        runs = {variant: [] for variant in ("off", "defaults", "single_fit")}
        shares = []  # checkpointing / training time, within each default run
        for _ in range(args.repeats):  # interleaved, so that machine load hits all alike
            for variant in runs:
                result = run_one(variant, data, scratch)
                runs[variant].append(result["train"])
                if "checkpointing" in result:
                    shares.append(result["checkpointing"] / result["train"])
        startup = [run_one("startup", data, scratch)["startup"] for _ in range(args.repeats)]
        save = run_one("save", data, scratch)
    off, defaults = statistics.median(runs["off"]), statistics.median(runs["defaults"])
    rows = [
        ("cnn training, checkpoints off", summary(runs["off"]), ""),
        (
            f"cnn training, default checkpoints (every {INTERVALS['every_epochs']} epoch, "
            f"{INTERVALS['every_minutes']} min)",
            summary(runs["defaults"]),
            "",
        ),
        (
            "checkpointing's share of a default run (fingerprint, saves, clean-up)",
            f"{100 * statistics.median(shares):.2f}% "
            f"({100 * min(shares):.2f}-{100 * max(shares):.2f})",
            "<= 3%",
        ),
        ("defaults / off (separate runs: includes load noise)", f"{defaults / off:.3f}", ""),
        (
            "one fit() call, Keras' shuffling (before resume support)",
            summary(runs["single_fit"]),
            "",
        ),
        (
            "one save (whole state, fsync)",
            f"{save['save'] * 1000:.0f} ms, {save['bytes'] / 1024:.0f} KiB",
            "",
        ),
        ("start-up of a resumed job, to its first step", summary(startup), ""),
        (
            "work lost to a kill, at most",
            f"min(one epoch ({off / HP['epochs']:.0f} s), {INTERVALS['every_minutes']} min) "
            f"+ {statistics.median(startup):.0f} s start-up",
            "",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}} | value | target")
    for name, value, target in rows:
        print(f"{name:<{width}} | {value} | {target}")


if __name__ == "__main__":
    main()
