rule preprocess:
    input:
        unpack(lambda wildcards: raw_files(wildcards.dataset)),
        code=code_stamp("preprocess.py"),
    output:
        "results/{dataset}/data.h5",
    log:
        "logs/{dataset}/preprocess.log",
    benchmark:
        "benchmarks/{dataset}/preprocess.tsv"
    conda:
        "../envs/python.yaml"
    envmodules:
        *config["envmodules"].get("preprocess", []),
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        validation_size=lambda wildcards: (
            config["split"]["validation_size"]
            or datasets.get_dataset(wildcards.dataset).validation_size
        ),
        seed=config["split"]["seed"],
    script:
        "../scripts/preprocess.py"
