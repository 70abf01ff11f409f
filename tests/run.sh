#!/usr/bin/env bash
# The test command of the README: installs what the tests need, brings up the local test
# schedulers (SLURM, Grid Engine, OpenPBS; needs root and Debian's apt), runs the linters and pytest.
# Scheduler tests skip with a reason where a scheduler could not be brought up.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # Open MPI: mpirun starts a distributed training's processes in PBS and Grid Engine jobs
    # (and under the PJM simulator's mpiexec); tests/test_launch.py runs it directly.
    if ! command -v mpirun >/dev/null; then
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends openmpi-bin libopenmpi-dev >/dev/null; } \
            || echo "WARNING: could not install Open MPI; its tests will be skipped"
    fi
    # A real module system (Environment Modules): tests/test_site_env.py loads a modulefile
    # in jobs through each profile's site set-up (MNIST_JOB_SOURCE, MNIST_JOB_MODULES).
    if [ ! -f /etc/profile.d/modules.sh ]; then
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends environment-modules >/dev/null; } \
            || echo "WARNING: could not install environment-modules; its tests will be skipped"
    fi
    for scheduler in slurm gridengine; do
        timeout 600 bash "tests/schedulers/${scheduler}_up.sh" \
            || echo "WARNING: could not bring up ${scheduler}; its tests will be skipped"
    done
    # OpenPBS is not in Debian: its build and bring-up script live beside the repository.
    pbs_up="../shared/vendor/openpbs/pbs_up.sh"
    if [ -f "$pbs_up" ]; then
        # CI reuses a developer's machine: a PBS server that was killed with the session there can
        # come back handing out job ids its recovered jobs hold ("qsub: Job with requested ID
        # already exists"), so CI starts from a fresh test server (pbs_up.sh's own log marks one).
        if [ "${CI:-}" = true ] && [ -f /var/tmp/pbs_postinstall.log ]; then
            bash "$(dirname "$pbs_up")/pbs_down.sh" --purge || true
        fi
        timeout 600 bash "$pbs_up" || echo "WARNING: could not bring up OpenPBS; its tests will be skipped"
    else
        echo "WARNING: $pbs_up not found; the OpenPBS tests will be skipped"
    fi
fi

# Apptainer and the CPU test image of workflow/envs/tensorflow.def (tests/test_container*.py).
# The image is built once per machine and reused: tests/container_image.sh caches it under a
# hash of the definition and the pins (~/.cache/mnistflow); a fresh machine builds it offline
# from Debian's mirror (5 min here, docs/containers.md).
apptainer_up="../shared/vendor/apptainer/apptainer_up.sh"
if [ "$(id -u)" = 0 ] && [ -f "$apptainer_up" ] && ! command -v apptainer >/dev/null; then
    bash "$apptainer_up" >/dev/null || echo "WARNING: could not install Apptainer; the container tests will be skipped (fail with CI=true)"
fi
if command -v apptainer >/dev/null; then
    echo "== container image: $(bash tests/container_image.sh || echo 'build FAILED (the container tests will fail)')"
fi

echo "== linters (what the Snakemake workflow catalog's CI checks, too)"
ruff check .
ruff format --check .
snakefmt --check .
snakemake --lint --config dataset=mnist-sample
snakemake --directory .test --lint
# The catalog's CI also runs the .test configuration and `snakemake --report` on it: pytest
# does (tests/test_report.py::test_dot_test_run_and_snakemakes_report_stand_on_their_own).

echo "== pytest"
# Four workers on two cores: the scheduler tests mostly wait for their jobs, so files run side
# by side (one file per worker: module fixtures, such as a trained model, are built once);
# `-p longest_first` starts the longest files first (tests/longest_first.py; opt-in).
# Options go to pytest: `bash tests/run.sh -m "not slow"` is the fast subset (README.md).
python3 -m pytest -ra --durations=15 -n "${TEST_WORKERS:-4}" --dist loadfile "$@"
