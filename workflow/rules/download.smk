# Downloads need the network, which cluster compute nodes often lack: run on the login node.
localrules:
    download,


rule download:
    input:
        code=code_stamp("download.py"),
    output:
        # update(): Snakemake does not delete the files before the job runs (nor after it
        # fails), so verified data survives a failed attempt to fetch it again; the script
        # keeps every file that still verifies and re-fetches only the others.
        [update(path) for path in raw_files("{dataset}").values()],
    log:
        "logs/{dataset}/download.log",
    conda:
        "../envs/python.yaml"
    envmodules:
        *config["envmodules"].get("download", []),
    params:
        # Only what defines the content makes the files stale. Mirrors, retries, backoff and
        # timeout (config download.*) are read by the script from the config instead: they
        # are not params, so changing them never reruns anything.
        checksums=lambda wildcards: datasets.checksums(wildcards.dataset),
    script:
        "../scripts/download.py"
