"""The longest test files first, under pytest-xdist's `--dist loadfile` (tests/run.sh).

xdist's own order hands out the files with the most tests first, so the one-test files that
take minutes (acceptance, the resume tests) started last and set the length of the whole run.
And a worker is handed its next file when it starts the last test of its current one: a file
handed to a worker busy with a minutes-long test waits behind it while other workers idle.
So a worker that asks gets the longest file left, unless it is still busy with a long file:
then the shortest (it asks again once the long one is over). Longest-first is the classic
greedy for a shortest total ("LPT"); it is a plain reordering, every test still runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# About the seconds a file takes (setup, tests and teardown) on a quiet 2-core Intel Xeon: the
# lead's full run of 2026-12-03 (its slowest tests) and a full run at a load of 13-19 that day,
# divided by three. Only the order matters. A file not named here counts as short.
SECONDS = {
    "test_acceptance.py": 420,
    "test_site_env_schedulers.py": 380,
    "test_scheduler_slurm.py": 380,
    "test_distributed_schedulers.py": 330,
    "test_sweep_slurm.py": 280,
    "test_resume_uge.py": 260,
    "test_resume_e2e.py": 250,
    "test_scheduler_pbs.py": 250,
    "test_e2e_halving.py": 230,
    "test_container.py": 220,
    "test_e2e_pipeline.py": 220,
    "test_distribution.py": 200,
    "test_container_schedulers.py": 200,
    "test_scheduler_uge.py": 180,
    "test_backend.py": 150,
    "test_e2e_sweep.py": 150,
    "test_resume_pjm.py": 150,
    "test_resume_slurm.py": 150,
    "test_documented_commands.py": 140,
    "test_bad_input.py": 135,
    "test_deploy.py": 135,
    "test_safety_pipeline.py": 130,
    "test_checkpoint.py": 125,
    "test_scheduler_pjm.py": 120,
    "test_config_injection.py": 120,
    "test_training.py": 120,
    "test_report.py": 100,
    "test_resume_pbs.py": 100,
    "test_profile_scripts.py": 70,
    "test_site_env.py": 65,
}
# A file this long keeps its worker busy: that worker gets the shortest file next.
LONG = 60


def cost(scope: str) -> float:
    """The expected seconds of a work unit of loadfile (a test file's path)."""
    return SECONDS.get(Path(scope.split("::")[0]).name, 0)


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class LongestFirst(LoadFileScheduling):
        def _assign_work_unit(self, node) -> None:
            busy = any(
                cost(scope) >= LONG and not all(done.values())
                for scope, done in self.assigned_work.get(node, {}).items()
            )
            scope = (min if busy else max)(self.workqueue, key=cost)
            self.workqueue.move_to_end(scope, last=False)  # xdist assigns the first unit
            super()._assign_work_unit(node)

    return LongestFirst(config, log)
