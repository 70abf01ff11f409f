# The parameter study's aggregate: tables, plot and summary of all runs (mnistflow.aggregate).
# Reads small files only: not worth a wait in the cluster's queue.
localrules:
    aggregate_sweep,


rule aggregate_sweep:
    input:
        metrics=lambda wildcards: sweep_run_outputs(wildcards.dataset, "metrics.json"),
        history=lambda wildcards: sweep_run_outputs(wildcards.dataset, "history.csv"),
        halving=lambda wildcards: halving_decisions(wildcards.dataset),
        code=code_stamp("aggregate.py"),
    output:
        settings="results/{dataset}/sweep/settings.csv",
        runs="results/{dataset}/sweep/runs.csv",
        plot=report(
            "results/{dataset}/sweep/validation_accuracy.png",
            caption="../report/sweep_plot.rst",
            category="Parameter study",
            labels={"figure": "validation accuracy vs hyperparameters"},
        ),
        summary="results/{dataset}/sweep/summary.txt",
        rungs="results/{dataset}/sweep/rungs.csv",
    log:
        "logs/{dataset}/aggregate_sweep.log",
    conda:
        "../envs/python.yaml"
    envmodules:
        *config["envmodules"].get("aggregate_sweep", []),
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        # The study itself: a changed set of runs reruns the aggregate even without new files.
        runs=lambda wildcards: [
            {"family": r.family, "run": r.name, "setting": r.setting, "seed": r.seed}
            for r in final_runs(wildcards.dataset)
        ],
        # Halving families: what a full grid of their settings would train, for the summary.
        halving=lambda wildcards: {
            family: {
                **spec,
                "runs": len(FAMILY_RUNS[family]),
                "seeds": len(sweeps.seeds(config)),
            }
            for family, spec in HALVING.items()
        },
    script:
        "../scripts/aggregate.py"
