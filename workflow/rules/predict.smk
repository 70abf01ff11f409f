# On demand, not part of `all`: classify your own images with a trained run (docs/predict.md).
#   snakemake -j1 predict --config predict='{images: my_digits, family: cnn}'
from mnistflow import predict


rule predict:
    input:
        lambda wildcards: predict.target(config),


rule predict_images:
    input:
        model="results/{dataset}/{family}/{run}/model.keras",
        images=lambda wildcards: predict.source(config, wildcards.name),
        code=code_stamp("predict.py"),
    output:
        "results/{dataset}/{family}/{run}/predicted/{name}.csv",
    log:
        "logs/{dataset}/{family}/{run}/predict-{name}.log",
    conda:
        "../envs/tensorflow.yaml"
    container:
        config["container"]
    resources:
        mem_mb=config["resources"]["evaluate"]["mem_mb"],
        runtime=config["resources"]["evaluate"]["runtime"],
    params:
        invert=config["predict"]["invert"],
        class_names=lambda wildcards: datasets.get_dataset(
            wildcards.dataset
        ).class_names,
        compute=config["compute"],
    script:
        "../scripts/predict.py"
