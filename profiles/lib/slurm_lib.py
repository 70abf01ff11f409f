"""Site settings of the SLURM profile, checked while Snakemake reads config.yaml.

The SLURM executor plugin builds the sbatch command itself; this module only
refuses environment values sbatch would misread, before anything is submitted.
The checks are clusterjob.py's, shared with the other profiles.
"""

from __future__ import annotations

from clusterjob import NAME, NAME_FORM, Setting

PARTITIONS = rf"{NAME}(,{NAME})*"
PARTITIONS_FORM = "a partition name, or several joined by ',' (letters, digits, '_', '.', '-')"
SETTINGS = [
    Setting("MNIST_SLURM_ACCOUNT", "slurm_account", NAME, f"an account: {NAME_FORM}"),
    Setting("MNIST_SLURM_PARTITION", "slurm_partition", PARTITIONS, PARTITIONS_FORM),
    Setting("MNIST_SLURM_GPU_PARTITION", "slurm_gpu_partition", PARTITIONS, PARTITIONS_FORM),
    Setting("MNIST_SLURM_STATUS", "slurm_status", r"squeue|sacct", "'squeue' or 'sacct'", "squeue"),
]


# clusterjob.profile refuses MNIST_JOB_ENV=clean with this: the plugin (2.8.0) sends
# --export=ALL itself and refuses --export in slurm_extra.
NO_CLEAN_ENV = (
    "MNIST_JOB_ENV=clean is not possible with snakemake-executor-plugin-slurm 2.8.0, "
    "which always sends --export=ALL: leave it unset; MNIST_JOB_SOURCE and "
    "MNIST_JOB_MODULES still set up every job"
)
