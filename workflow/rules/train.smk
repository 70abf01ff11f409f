rule train:
    input:
        data="results/{dataset}/data.h5",
        promotion=TRAIN_PROMOTION,  # successive halving: after the last rung's decision
        code=code_stamp("train.py"),
    output:
        param="results/{dataset}/{family}/{run}/param.hdf5",
        model="results/{dataset}/{family}/{run}/model.keras",
        history="results/{dataset}/{family}/{run}/history.csv",
        predictions="results/{dataset}/{family}/{run}/predictions.npz",
    log:
        "logs/{dataset}/{family}/{run}/train.log",
    benchmark:
        "benchmarks/{dataset}/{family}/{run}/train.tsv"
    wildcard_constraints:
        family=SINGLE_FAMILIES,
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
    script:
        "../scripts/train.py"
