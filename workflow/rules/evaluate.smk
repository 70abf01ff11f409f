rule evaluate:
    input:
        data="results/{dataset}/data.h5",
        predictions="results/{dataset}/{family}/{run}/predictions.npz",
        code=package_sources("evaluate.py"),
    output:
        metrics="results/{dataset}/{family}/{run}/metrics.json",
        confusion=report(
            "results/{dataset}/{family}/{run}/confusion_matrix.png",
            caption="../report/confusion_matrix.rst",
            category="Confusion matrices",
            labels={"family": "{family}", "run": "{run}"},
        ),
        misclassified=report(
            "results/{dataset}/{family}/{run}/misclassified.png",
            caption="../report/misclassified.rst",
            category="Misclassified test images",
            labels={"family": "{family}", "run": "{run}"},
        ),
    log:
        "logs/{dataset}/{family}/{run}/evaluate.log",
    benchmark:
        "benchmarks/{dataset}/{family}/{run}/evaluate.tsv"
    group:
        STUDY_GROUP
    conda:
        "../envs/python.yaml"
    envmodules:
        *config["envmodules"].get("evaluate", []),
    threads: step_threads("evaluate")
    resources:
        mem_mb=config["resources"]["evaluate"]["mem_mb"],
        runtime=config["resources"]["evaluate"]["runtime"],
    params:
        hyperparameters=hyperparameters,
        class_names=lambda wildcards: datasets.get_dataset(
            wildcards.dataset
        ).class_names,
    script:
        "../scripts/evaluate.py"
