#!/usr/bin/env python3
"""Cancel PJM jobs: `pjm_cancel.py JOBID...` (called by cluster-generic on Ctrl-C)."""

import os
import subprocess
import sys

PJDEL = os.environ.get("PJM_PJDEL", "pjdel")

if __name__ == "__main__":
    ids = [a for a in sys.argv[1:] if a]
    if ids:
        sys.exit(subprocess.run([PJDEL, *ids]).returncode)
