"""Print constraints.txt: every package requirements-dev.txt pulls in, at its installed version.

Run in the environment the tests passed in: `python3 tests/lock.py > constraints.txt`.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
HEADER = """\
# Every package that `pip install -r requirements-dev.txt` installs, at the version the tests
# passed with (Python 3.11, Linux x86_64): requirements.txt applies it with `-c`, so users and
# CI get exactly these. Regenerate after an upgrade that passed `bash tests/run.sh`:
#   python3 tests/lock.py > constraints.txt"""
NOT_PINNED = {"pip", "setuptools", "wheel"}  # the installer's own tools


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def top_level(path: Path) -> list[str]:
    """Package names in a requirements file, following its -r includes."""
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            names += top_level(path.parent / line[3:].strip())
        elif line and not line.startswith("-"):
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate():  # this machine's
                names.append(requirement.name)
    return names


def closure(roots: list[str]) -> dict[str, str]:
    environment = {**default_environment(), "extra": ""}
    versions, pending = {}, list(roots)
    while pending:
        name = normalise(pending.pop())
        if name in versions or name in NOT_PINNED:
            continue
        distribution = importlib.metadata.distribution(name)
        versions[name] = distribution.version
        for text in distribution.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate(environment):
                pending.append(requirement.name)
    return versions


if __name__ == "__main__":
    print(HEADER)
    for name, version in sorted(closure(top_level(REPO / "requirements-dev.txt")).items()):
        if name == "tensorflow-cpu":  # x86_64 wheels only: aarch64 takes tensorflow (same build)
            print(f'{name}=={version}; platform_machine == "x86_64"')
            print(f'tensorflow=={version}; platform_machine != "x86_64"')
        else:
            print(f"{name}=={version}")
