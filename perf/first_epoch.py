"""The cnn's test accuracy after its first epoch(s) over seeds, trained by the pipeline's
own train step (mnistflow.training.train, as perf/run.py's pipeline_fit runs it).

    python perf/first_epoch.py [--seeds 0 1 2 3 4] [--epochs 1] [--set KEY=VALUE ...] [--raw]

Each seed trains the default cnn configuration (``--set`` changes hyperparameters, e.g.
``--set batch_size=96 'filters=[24, 32, 48]'``) for the first ``--epochs`` of its schedule,
in one process, and prints each epoch's seconds and the test accuracy of the weights the
pipeline validates and saves (the averaged ones), with ``--raw`` also the last step's
weights'; then the worst and the median. Target (issue 23): 99.0% after the first epoch for
seeds 0-4. Nothing is written to the repository.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import yaml
from run import (
    REPO,
    cpu_model,
    load_average,
    pipeline_fit,
    prepared_mnist,
    seed_study_parser,
    with_settings,
)


def main() -> None:
    parser = seed_study_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=1, help="of the schedule, trained")
    parser.add_argument("--raw", action="store_true", help="also test the last step's weights")
    args = parser.parse_args()
    from mnistflow import runtime

    runtime.configure(2, seed=0)  # as the pipeline's train step: op determinism, no XLA
    from mnistflow import settings

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    hp = with_settings(config["hyperparameters"]["cnn"], args.set)
    print(f"CPU: {cpu_model()}; load average {load_average()}")
    print(f"cnn, default configuration{' with ' + ' '.join(args.set) if args.set else ''}")
    accuracies = []
    with tempfile.TemporaryDirectory() as tmp:
        data = prepared_mnist(args.mnist.resolve(), Path(tmp))
        for seed in args.seeds:
            run_hp = settings.canonical({**hp, "seed": seed})
            scratch = Path(tmp) / str(seed)
            rows = pipeline_fit(data, run_hp, scratch, until=args.epochs, raw=args.raw)
            for row in rows:
                raw = f", raw {row['raw accuracy']:.4f}" if args.raw else ""
                print(
                    f"  seed {seed} epoch {row['epoch']}: {row['seconds']:.1f} s, "
                    f"test accuracy {row['accuracy']:.4f}{raw}",
                    flush=True,
                )
            accuracies.append(rows[-1]["accuracy"])
    print(f"after epoch {args.epochs}: " + ", ".join(f"{a:.4f}" for a in accuracies))
    worst, median = min(accuracies), statistics.median(accuracies)
    print(f"worst {worst:.4f}, median {median:.4f} (target: worst >= 0.99)")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
