# The workflow lives in workflow/Snakefile (the Snakemake workflow catalog's layout); this
# file lets `snakemake` run from the repository's top level as well.
include: "workflow/Snakefile"


# Snakemake restores the default target after an `include:`, so name it here again.
rule default:
    default_target: True
    input:
        rules.all.input,
