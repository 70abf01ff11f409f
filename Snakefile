# Train and evaluate Keras MNIST classifiers: download -> preprocess -> train -> evaluate -> report.
# Run locally with `snakemake -j4`, on a cluster with `snakemake --profile profiles/<scheduler>`.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/sweep.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        report_html(config["dataset"]),
        sweep_outputs(config["dataset"]).values(),
