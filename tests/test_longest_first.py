"""tests/longest_first.py: under `--dist loadfile` the longest files start first, and a worker
busy with a long file is handed a short one (xdist hands a worker its next file when it starts
its current file's last test). Run on scratch test files that record their order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# name: (tests in the file, the seconds longest_first is told it takes)
FILES = {"short_a": (3, 0), "short_b": (3, 0), "short_c": (3, 0), "mid": (1, 100), "long": (1, 400)}


def test_the_longest_files_go_first_and_a_busy_worker_gets_a_short_one(tmp_path):
    log = tmp_path / "order.txt"
    for name, (count, _) in FILES.items():
        (tmp_path / f"test_{name}.py").write_text(
            "import os, time\n"
            + "".join(
                f"def test_{i}():\n"
                f"    time.sleep(0.5)\n"
                f"    with open({str(log)!r}, 'a') as f:\n"
                f"        f.write(os.environ['PYTEST_XDIST_WORKER'] + ' {name}\\n')\n"
                for i in range(count)
            )
        )
    seconds = {f"test_{name}.py": s for name, (_, s) in FILES.items() if s}
    (tmp_path / "conftest.py").write_text(
        f"import sys\nsys.path.insert(0, {str(TESTS)!r})\n"
        f"import longest_first\nlongest_first.SECONDS = {seconds!r}\n"
        "pytest_plugins = ['longest_first']\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2",
         "--dist", "loadfile", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    runs = [line.split() for line in log.read_text().splitlines()]
    by_worker: dict[str, list[str]] = {}
    for worker, name in runs:
        if name not in by_worker.setdefault(worker, [])[-1:]:
            by_worker[worker].append(name)
    # Each worker starts with one of the two long files, then a short one (handed over while
    # the long test runs); xdist's own order would start with the three-test files.
    firsts = sorted(files[0] for files in by_worker.values())
    assert firsts == ["long", "mid"], by_worker
    for files in by_worker.values():
        assert files[1].startswith("short_"), by_worker
    assert sorted(name for files in by_worker.values() for name in files) == sorted(FILES)
