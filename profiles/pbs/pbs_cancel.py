#!/usr/bin/env python3
"""Cancel PBS jobs: `pbs_cancel.py JOBID...` (called by cluster-generic on Ctrl-C)."""

import os
import subprocess
import sys

QDEL = os.environ.get("PBS_QDEL", "qdel")

if __name__ == "__main__":
    ids = [a for a in sys.argv[1:] if a]
    if ids:
        sys.exit(subprocess.run([QDEL, *ids]).returncode)
