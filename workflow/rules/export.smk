# On demand, not part of `all`: the export reads model.keras, so the train job stays lean.
rule export:
    input:
        model="results/{dataset}/{family}/{run}/model.keras",
        code=code_stamp("export.py"),
    output:
        directory("results/{dataset}/{family}/{run}/saved_model"),
    log:
        "logs/{dataset}/{family}/{run}/export.log",
    conda:
        "../envs/tensorflow.yaml"
    container:
        config["container"]
    resources:
        mem_mb=config["resources"]["evaluate"]["mem_mb"],
        runtime=config["resources"]["evaluate"]["runtime"],
    script:
        "../scripts/export.py"
