rule evaluate:
    input:
        data="results/{dataset}/data.h5",
        param="results/{dataset}/{family}/{run}/param.hdf5",
        code=package_sources("models", "evaluation", "plots", "runtime"),
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
        "../envs/tensorflow.yaml"
    container:
        config["container"]
    threads: step_threads("evaluate")
    resources:
        mem_mb=config["resources"]["evaluate"]["mem_mb"],
        runtime=config["resources"]["evaluate"]["runtime"],
        gpu=config["resources"]["evaluate"]["gpu"],
        gpu_model=config["resources"]["evaluate"]["gpu_model"],
    params:
        hyperparameters=hyperparameters,
        compute=config["compute"],
        class_names=lambda wildcards: datasets.get_dataset(
            wildcards.dataset
        ).class_names,
    script:
        "../scripts/evaluate.py"
