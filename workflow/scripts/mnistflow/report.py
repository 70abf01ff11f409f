"""One self-contained HTML report comparing all runs (images embedded; no TensorFlow)."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import tempfile
from pathlib import Path

import yaml

from mnistflow import aggregate, plots
from mnistflow.atomic import write_text


def read_history(path: str | Path) -> list[dict]:
    with open(path, newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _img(path: str | Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; } .pair { display: flex; gap: 1em; flex-wrap: wrap; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
"""


def _sweep_section(sweep: dict) -> tuple[list[str], set[str]]:
    """The parameter study's section, and its runs to leave out of the per-run details.

    ``sweep``: paths of the aggregate's settings, runs, plot and summary. Only the winning
    settings' runs keep their details, so that a study of hundreds of runs stays readable.
    """
    settings = aggregate.read_settings(sweep["settings"])
    swept = [key for key in settings[0] if key not in aggregate.SETTING_COLUMNS] if settings else []
    rows = [
        [
            row["family"],
            row["rank"],
            "\u2605 winner" if row["winner"] else "",
            row["setting"],
            *(row[key] for key in swept),
            row["seeds"],
            aggregate.format_mean_std(row, "val_accuracy"),
            f"{float(row['val_gap_to_winner']):.4f}",
            aggregate.format_mean_std(row, "test_accuracy"),
        ]
        for row in settings
    ]
    with open(sweep["runs"], newline="") as handle:
        hidden = {
            f"{run['family']}/{run['run']}" for run in csv.DictReader(handle) if not run["winner"]
        }
    summary = Path(sweep["summary"]).read_text().splitlines()
    section = [
        "<h2>Parameter study</h2>",
        "<p>Settings are ranked on validation accuracy; test accuracy is reported, never used "
        "to choose. Mean \u00b1 standard deviation over n seeds.</p>",
        "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in summary) + "</ul>",
        _table(
            [
                "family",
                "rank",
                "",
                "setting",
                *swept,
                "seeds",
                "val accuracy",
                "behind winner",
                "test accuracy",
            ],
            rows,
        ),
        _img(sweep["plot"], "validation accuracy vs swept hyperparameters"),
        *_halving_section(sweep.get("rungs")),
    ]
    return section, hidden


def _tensorboard_section(config: dict) -> list[str]:
    """Where the runs' TensorBoard event files are and how to watch them (docs/tensorboard.md)."""
    tensorboard = config.get("tensorboard") or {}
    if not tensorboard.get("enabled"):
        return []
    folder = Path(tensorboard["directory"], config["dataset"])
    # The report lives in results/<dataset>/: a relative folder is two levels up.
    link = folder.as_uri() if folder.is_absolute() else f"../../{folder.as_posix()}"
    command = f"tensorboard --logdir {folder.as_posix()}"
    return [
        "<h2>TensorBoard</h2>",
        f'<p>Every training\'s curves, written while it trained: <a href="{html.escape(link)}/">'
        f"{html.escape(folder.as_posix())}/</a> (one folder per run). Watch them with "
        f"<code>{html.escape(command)}</code> from the working directory.</p>",
    ]


def _halving_section(rungs_csv: str | None) -> list[str]:
    """Successive halving: where each setting stopped and how far it trailed there."""
    if not rungs_csv or not Path(rungs_csv).exists():
        return []
    with open(rungs_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return []
    return [
        "<h3>Successive halving</h3>",
        "<p>Each rung ranks its settings on validation accuracy after its epochs and stops "
        "all but the best 1/eta; the promoted ones resume from their checkpoints.</p>",
        _table(
            [
                "family",
                "setting",
                "stopped after",
                "rank",
                "val accuracy",
                "behind promoted",
                "epochs trained",
            ],
            [
                [
                    row["family"],
                    row["setting"],
                    f"{row['stopped_at']} epochs" if row["stopped_at"] else "finished",
                    f"{row['rank']} of {row['of']}",
                    f"{float(row['val_accuracy_mean']):.4f}",
                    f"{float(row['behind_cutoff']):.4f}",
                    row["epochs_trained"],
                ]
                for row in rows
            ],
        ),
    ]


METRICS_COLUMNS = [
    "run",
    "family",
    "epochs",
    "val accuracy",
    "test accuracy",
    "test loss",
    "train s",
]


def metrics_csv(rows: list[list]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(METRICS_COLUMNS)
    writer.writerows(rows)
    return out.getvalue()


def build_report(
    runs: list[dict],
    config: dict,
    dest: str | Path,
    title: str,
    sweep: dict | None = None,
    *,
    curves_png: str | Path | None = None,
    metrics_table: str | Path | None = None,
) -> None:
    """``runs``: dicts with keys run, metrics, history, confusion_png, misclassified_png.

    ``sweep``: the parameter study's aggregate (see ``_sweep_section``), if there is one.
    ``curves_png``, ``metrics_table``: where to keep the training curves and the metrics
    table (CSV) too, for Snakemake's own report.
    """
    metrics = [json.loads(Path(r["metrics"]).read_text()) for r in runs]
    histories = {r["run"]: read_history(r["history"]) for r in runs}
    rows = []
    for run, m in zip(runs, metrics, strict=True):
        last = histories[run["run"]][-1]
        rows.append(
            [
                run["run"],
                m["family"],
                int(last["epoch"]),
                f"{last['val_accuracy']:.4f}",
                f"{m['test_accuracy']:.4f}",
                f"{m['test_loss']:.4f}",
                f"{sum(row['seconds'] for row in histories[run['run']]):.1f}",
            ]
        )
    study_section, hidden = _sweep_section(sweep) if sweep else ([], set())
    shown = {r: h for r, h in histories.items() if r not in hidden}
    if curves_png:
        plots.training_curves(shown, curves_png)
        curves_html = _img(curves_png, "training curves")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            plots.training_curves(shown, Path(tmp) / "curves.png")
            curves_html = _img(Path(tmp) / "curves.png", "training curves")
    if metrics_table:
        write_text(metrics_table, metrics_csv(rows))
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Metrics</h2>",
        _table(METRICS_COLUMNS, rows),
        *study_section,
        "<h2>Training curves</h2>",
        curves_html,
        *_tensorboard_section(config),
    ]
    for run, m in zip(runs, metrics, strict=True):
        if run["run"] in hidden:
            continue
        sections += [
            f"<h2>{html.escape(run['run'])}</h2>",
            "<h3>Hyperparameters</h3>",
            _table(list(m["hyperparameters"]), [list(m["hyperparameters"].values())]),
            "<h3>Per-class metrics (test set)</h3>",
            _table(
                ["class", "precision", "recall", "F1", "support"],
                [
                    [
                        name,
                        f"{c['precision']:.4f}",
                        f"{c['recall']:.4f}",
                        f"{c['f1-score']:.4f}",
                        int(c["support"]),
                    ]
                    for name, c in m["per_class"].items()
                ],
            ),
            '<div class="pair">',
            _img(run["confusion_png"], f"{run['run']} confusion matrix"),
            _img(run["misclassified_png"], f"{run['run']} misclassified"),
            "</div>",
        ]
    software = metrics[0].get("software", {}) if metrics else {}
    sections += [
        "<h2>Configuration</h2>",
        f"<pre>{html.escape(yaml.safe_dump(config, sort_keys=False))}</pre>",
        "<h2>Software</h2>",
        _table(["package", "version"], sorted(software.items())),
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )
    write_text(dest, page)
