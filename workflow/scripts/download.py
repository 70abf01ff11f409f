"""Snakemake script: fetch and verify the data set's four IDX files (see mnistflow.download)."""

import sys
from pathlib import Path

from mnistflow import datasets, download, runtime

runtime.log_to(snakemake.log[0])
try:
    download.fetch_dataset(
        datasets.get_dataset(snakemake.wildcards.dataset),
        Path(snakemake.output[0]).parent,
        extra_mirrors=snakemake.params.mirrors,
        use_default_mirrors=snakemake.params.default_mirrors,
        retries=snakemake.params.retries,
        backoff_s=snakemake.params.backoff_seconds,
        timeout_s=snakemake.params.timeout_seconds,
    )
except download.DownloadError as error:
    sys.exit(f"ERROR: {error}")  # the message is the whole story: no traceback
