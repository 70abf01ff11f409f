# Successive halving (docs/sweeps.md, mnistflow.halving): the rungs before the last. A rung
# training is the run's own training (its hyperparameters, epochs = the last rung) stopped
# after the rung's epochs; its checkpoint stays in checkpoint.directory, outside the outputs
# (Snakemake removes a failed job's outputs), and the next rung resumes from it. The last rung
# is the train rule, which resumes the promoted runs and ends them as any other run.
localrules:
    select_rung,


rule train_rung:
    input:
        data="results/{dataset}/data.h5",
        promotion=lambda wildcards: previous_decision(
            wildcards.dataset, wildcards.family, wildcards.epochs
        ),
        code=code_stamp("train.py"),
    output:
        history="results/{dataset}/{family}/{run}/rung-{epochs}.csv",
    log:
        "logs/{dataset}/{family}/{run}/train_rung-{epochs}.log",
    benchmark:
        "benchmarks/{dataset}/{family}/{run}/train_rung-{epochs}.tsv"
    wildcard_constraints:
        epochs=r"\d+",
    group:
        STUDY_GROUP
    conda:
        "../envs/tensorflow.yaml"
    container:
        config["container"]
    envmodules:
        *config["envmodules"].get("train", []),
    threads: step_threads("train")
    resources:
        **train_resources(),
        mem_mb=config["resources"]["train"]["mem_mb"],
        runtime=train_runtime,
        gpu_model=config["resources"]["train"]["gpu_model"],
    params:
        hyperparameters=hyperparameters,
        compute=config["compute"],
        stop_at_epoch=lambda wildcards: int(wildcards.epochs),
    script:
        "../scripts/train.py"


# After each rung but the last: rank its settings on validation accuracy, keep the best 1/eta.
checkpoint select_rung:
    input:
        histories=lambda wildcards: [
            rung_history(
                wildcards.dataset, wildcards.family, run.name, wildcards.epochs
            )
            for run in runs_at_rung(
                wildcards.dataset, wildcards.family, wildcards.epochs
            )
        ],
        code=code_stamp("select_rung.py"),
    output:
        "results/{dataset}/sweep/halving/{family}/rung-{epochs}.json",
    log:
        "logs/{dataset}/halving/{family}/rung-{epochs}.log",
    wildcard_constraints:
        epochs=r"\d+",
    conda:
        "../envs/python.yaml"
    params:
        runs=lambda wildcards: [
            {"setting": run.setting, "run": run.name, "seed": run.seed}
            for run in runs_at_rung(
                wildcards.dataset, wildcards.family, wildcards.epochs
            )
        ],
        eta=lambda wildcards: HALVING[wildcards.family].get("eta", 3),
    script:
        "../scripts/select_rung.py"
