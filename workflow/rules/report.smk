# A study's runs come in through its aggregate, which waits for every one of them (and
# reruns when one does): listing their four files each here too cost a second of planning
# per thousand runs. The script reads each run's files from its folder (params runs).
rule report:
    input:
        metrics=lambda wildcards: single_run_outputs(wildcards.dataset, "metrics.json"),
        history=lambda wildcards: single_run_outputs(wildcards.dataset, "history.csv"),
        confusion=lambda wildcards: single_run_outputs(
            wildcards.dataset, "confusion_matrix.png"
        ),
        misclassified=lambda wildcards: single_run_outputs(
            wildcards.dataset, "misclassified.png"
        ),
        code=code_stamp("report.py"),
        sweep=lambda wildcards: list(sweep_outputs(wildcards.dataset).values()),
    output:
        html=report(
            "results/{dataset}/report.html",
            caption="../report/report_html.rst",
            category="Summary",
            labels={"item": "HTML report of all runs"},
        ),
        curves=report(
            "results/{dataset}/curves.png",
            caption="../report/curves.rst",
            category="Summary",
            labels={"item": "training curves"},
        ),
        metrics=report(
            "results/{dataset}/metrics.csv",
            caption="../report/metrics.rst",
            category="Summary",
            labels={"item": "metrics of all runs"},
        ),
    log:
        "logs/{dataset}/report.log",
    benchmark:
        "benchmarks/{dataset}/report.tsv"
    conda:
        "../envs/python.yaml"
    envmodules:
        *config["envmodules"].get("report", []),
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        runs=lambda wildcards: [
            f"{family}/{run}" for family, run in reported_runs(wildcards.dataset)
        ],
        config=settings.canonical_config(config),
        sweep=lambda wildcards: sweep_outputs(wildcards.dataset),
    script:
        "../scripts/report.py"
