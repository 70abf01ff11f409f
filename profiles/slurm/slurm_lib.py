"""Site settings of the SLURM profile, checked while Snakemake reads config.yaml.

The SLURM executor plugin builds the sbatch command itself; this module only
refuses environment values sbatch would misread, before anything is submitted.
The checks are ../lib/clusterjob.py's, shared with the other profiles.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from clusterjob import NAME, NAME_FORM, Setting, settings_from_environment  # noqa: E402

PARTITIONS = rf"{NAME}(,{NAME})*"
PARTITIONS_FORM = "a partition name, or several joined by ',' (letters, digits, '_', '.', '-')"
SETTINGS = [
    Setting("MNIST_SLURM_ACCOUNT", "slurm_account", NAME, f"an account: {NAME_FORM}"),
    Setting("MNIST_SLURM_PARTITION", "slurm_partition", PARTITIONS, PARTITIONS_FORM),
    Setting("MNIST_SLURM_GPU_PARTITION", "slurm_gpu_partition", PARTITIONS, PARTITIONS_FORM),
    Setting("MNIST_SLURM_STATUS", "slurm_status", r"squeue|sacct", "'squeue' or 'sacct'", "squeue"),
]


def site_settings(environ=os.environ) -> dict[str, str]:
    """{resource: value} of the settings that are set, each checked."""
    return settings_from_environment(SETTINGS, environ)
