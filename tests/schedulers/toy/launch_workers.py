"""The toy's train_dist job: start the workers as train.py does, with mnistflow.launch.

    python launch_workers.py PROCESSES NODES OUT_DIR

Runs meet.py as PROCESSES processes of one job (srun in SLURM, mpirun in PBS or Grid
Engine, mpiexec in PJM, else local) and exits with their worst exit code.
"""

import os
import sys

from mnistflow.launch import run_workers

processes, nodes, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
meet = os.path.join(os.path.dirname(os.path.abspath(__file__)), "meet.py")
sys.exit(run_workers(processes, [sys.executable, meet, out], nodes=nodes))
