"""Snakemake script: fetch and verify the data set's four IDX files (see mnistflow.download)."""

import sys
from pathlib import Path

from mnistflow import datasets, download, runtime

runtime.log_to(snakemake.log[0])
# Where and how patiently to fetch come from the config, not params (see download.smk).
options = snakemake.config["download"]
try:
    download.fetch_dataset(
        datasets.get_dataset(snakemake.wildcards.dataset),
        Path(snakemake.output[0]).parent,
        extra_mirrors=options["mirrors"],
        use_default_mirrors=options["default_mirrors"],
        retries=options["retries"],
        backoff_s=options["backoff_seconds"],
        timeout_s=options["timeout_seconds"],
    )
except download.DownloadError as error:
    sys.exit(f"ERROR: {error}")  # the message is the whole story: no traceback
