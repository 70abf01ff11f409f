rule evaluate:
    input:
        data="results/{dataset}/data.h5",
        predictions="results/{dataset}/{family}/{run}/predictions.npz",
        code=code_stamp("evaluate.py"),
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
    wildcard_constraints:
        family=SINGLE_FAMILIES,
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


# A study run (sweep.smk): the same training, then its evaluation in the same job (train.py
# runs evaluate.py after it, with the evaluate log), so that a study plans one job per run.
if (
    not LOCAL_WORKFLOW
):  # from git: evaluate.py cached beside the package, where train.py looks
    workflow.source_path("../scripts/evaluate.py")


use rule train as train_study with:
    input:
        data="results/{dataset}/data.h5",
        promotion=TRAIN_PROMOTION,
        code=code_stamp("train.py", "evaluate.py"),
    output:
        **rules.train.output,
        **rules.evaluate.output,
    log:
        train="logs/{dataset}/{family}/{run}/train.log",
        evaluate="logs/{dataset}/{family}/{run}/evaluate.log",
    wildcard_constraints:
        family=STUDY_FAMILIES,
