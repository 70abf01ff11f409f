# Downloads need the network, which cluster compute nodes often lack: run on the login node.
localrules:
    download,


rule download:
    output:
        list(raw_files("{dataset}").values()),
    log:
        "logs/{dataset}/download.log",
    conda:
        "../envs/python.yaml"
    params:
        mirrors=config["download"]["mirrors"],
        default_mirrors=config["download"]["default_mirrors"],
        retries=config["download"]["retries"],
        backoff_seconds=config["download"]["backoff_seconds"],
        timeout_seconds=config["download"]["timeout_seconds"],
    script:
        "../scripts/download.py"
