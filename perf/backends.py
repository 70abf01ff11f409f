"""TensorFlow against JAX as Keras' backend, per model family and seed, on the real MNIST.

    python perf/backends.py [--mnist ../shared/data/mnist] [--repeats 2] [--families cnn]
    python perf/backends.py --families cnn --backends tensorflow --seeds 0 1 2 3 4 --repeats 1

Each training runs in a fresh process (so Keras is imported with the backend under test), as
the pipeline trains: the family's default hyperparameters and seed, the configured threads,
op determinism. Per backend it prints: seconds to import Keras, training seconds until the
test accuracy first reaches the family's target (checked after every epoch, evaluation
excluded), the final test accuracy, and whether every repeat ended with the same weights
(the determinism for a seed). Backends alternate within each repeat, so drifting load hits
both alike.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow" / "scripts"))
sys.path.insert(0, str(REPO / "perf"))

BACKENDS = ("tensorflow", "jax")
TARGETS = {"softmax": 0.92, "mlp": 0.975, "cnn": 0.99}


def child(backend: str, family: str, seed: int, mnist: Path, precision: str, hp_set) -> dict:
    """One training in this process; returns its measures (printed as JSON)."""
    import yaml

    from mnistflow import runtime, settings

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    changes = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in hp_set)}
    hp = settings.canonical(
        {
            **config["hyperparameters"][family],
            **changes,
            "seed": config["seed"] if seed < 0 else seed,
        }
    )
    before_import = time.perf_counter()
    runtime.configure(2, seed=hp["seed"], backend=backend, precision=precision)
    import_seconds = time.perf_counter() - before_import
    import numpy as np
    from run import load_mnist, time_to_accuracy

    from mnistflow import models

    x_train, y_train, x_test, y_test = load_mnist(mnist)
    model = models.build_model(family, hp)
    steps = int(np.ceil(len(y_train) / hp["batch_size"]))
    models.compile_model(model, hp, steps)
    reached, accuracy, trained, _ = time_to_accuracy(
        model,
        models.reshape_for(model, x_train),
        y_train,
        models.reshape_for(model, x_test),
        y_test,
        hp["batch_size"],
        hp["epochs"],
        TARGETS[family],
    )
    weights = hashlib.sha256()
    for array in model.get_weights():
        weights.update(np.ascontiguousarray(array).tobytes())
    return {
        "import": import_seconds,
        "reached": reached,
        "accuracy": accuracy,
        "trained": trained,
        "weights": weights.hexdigest()[:12],
        "process": time.perf_counter() - STARTED,
    }


def median(values) -> float:
    values = [v if v is not None else float("inf") for v in values]
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=REPO.parent / "shared" / "data" / "mnist")
    parser.add_argument("--repeats", type=int, default=2, help="2+ also checks determinism")
    parser.add_argument("--families", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--precision", default="float32", help="Keras dtype policy")
    parser.add_argument("--seeds", nargs="+", type=int, default=[-1], help="default: config's")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="e.g. epochs=8")
    parser.add_argument(
        "--child", nargs=3, metavar=("BACKEND", "FAMILY", "SEED"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        backend, family, seed = args.child
        measures = child(backend, family, int(seed), args.mnist.resolve(), args.precision, args.set)
        print(json.dumps(measures))
        return
    results = {}  # (family, backend) -> [measures]
    for repeat in range(args.repeats):
        for family in args.families:
            order = args.backends if repeat % 2 == 0 else args.backends[::-1]
            for seed in args.seeds:
                for backend in order:
                    command = [sys.executable, __file__, "--child", backend, family, str(seed)]
                    command += ["--mnist", str(args.mnist), "--precision", args.precision]
                    command += ["--set", *args.set]
                    done = subprocess.run(command, capture_output=True, text=True)
                    if done.returncode != 0:
                        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
                    measures = json.loads(done.stdout.strip().splitlines()[-1])
                    results.setdefault((family, backend), []).append(measures)
                    print(
                        f"  {repeat + 1} {family} {backend} seed {seed}: {measures}",
                        file=sys.stderr,
                    )
    print(
        f"{'family':<8} {'backend':<10} {'import s':>8} {'train s to target':>18} "
        f"{'all epochs s':>12} {'final acc':>9} {'same weights':>12}"
    )
    for (family, backend), runs in results.items():
        same = len({r["weights"] for r in runs}) == 1 if len(args.seeds) == 1 < len(runs) else "n/a"
        print(
            f"{family:<8} {backend:<10} {median(r['import'] for r in runs):>8.2f} "
            f"{median(r['reached'] for r in runs):>11.2f} ({TARGETS[family]:.3f}) "
            f"{median(r['trained'] for r in runs):>12.2f} "
            f"{median(r['accuracy'] for r in runs):>9.4f} {str(same):>12}"
        )
        if len(args.seeds) > 1:
            accuracies = sorted(r["accuracy"] for r in runs)
            print(
                f"{'':<19} over seeds {args.seeds}: worst {accuracies[0]:.4f}, "
                f"median {statistics.median(accuracies):.4f}, best {accuracies[-1]:.4f}"
            )
    for family in args.families:
        runs = [results.get((family, b)) for b in ("tensorflow", "jax")]
        if all(runs):
            tf_s, jax_s = (median(r["trained"] for r in rs) for rs in runs)
            print(f"{family}: jax / tensorflow training time {jax_s / tf_s:.2f}")


if __name__ == "__main__":
    main()
