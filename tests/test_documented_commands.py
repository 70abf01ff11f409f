"""Every `snakemake` command line the markdown docs show works as written (as a dry run).

Commands come from the docs' ```bash / ```sh / ```shell code blocks: each line (or each
`&&`-joined part of a line) that starts with `snakemake` runs in a scratch copy of the
workflow with `-n` added, after the `export` lines of its block, through the real CLI and
the real profiles. A file a command names with `--configfile NAME` is taken from the same
document's ```yaml block that follows a line naming `NAME` in backticks.

A block that only illustrates (placeholders, output) is marked in its info string:
```bash not-a-command
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, copy_workflow

DOCS = ["README.md", "config/README.md", "profiles/README.md", "docs/*.md"]
SHELLS = {"bash", "sh", "shell", "console"}
OPT_OUT = "not-a-command"
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.S | re.M)


def doc_files() -> list[Path]:
    return sorted({path for pattern in DOCS for path in REPO.glob(pattern)})


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """(document, command, the block's export lines) for every snakemake command shown."""
    found = []
    for doc in doc_files():
        for match in FENCE.finditer(doc.read_text()):
            words = match.group(1).split()
            if not words or words[0] not in SHELLS or OPT_OUT in words:
                continue
            exports = []
            # A line ending in a backslash goes on in the next one, as in the shell.
            block = re.sub(r"\\\n\s*", " ", match.group(2))
            for line in block.splitlines():
                line = line.removeprefix("$ ").strip()
                if line.startswith("export "):
                    exports.append(line)
                for part in re.split(r"\s*(?:&&|;)\s*", line):
                    if re.match(r"snakemake(\s|$)", part):
                        found.append((str(doc.relative_to(REPO)), part, list(exports)))
    return found


def config_file_from_docs(doc: Path, name: str) -> str:
    """The ```yaml block that follows the document's line naming `name`."""
    pattern = rf"`{re.escape(name)}`[^\n]*\n\s*```ya?ml[^\n]*\n(.*?)^```"
    match = re.search(pattern, doc.read_text(), re.S | re.M)
    assert match, (
        f"{doc.relative_to(REPO)} runs --configfile {name} but shows no ```yaml block "
        f"right after a line naming `{name}`"
    )
    return match.group(1)


COMMANDS = documented_commands()


def test_the_docs_show_commands_to_test():
    # Guards the extraction itself: the README's quick start at least must be found.
    assert any("--config dataset=mnist-sample" in command for _, command, _ in COMMANDS)
    assert any("--profile profiles/slurm" in command for _, command, _ in COMMANDS)


@pytest.mark.parametrize(
    ("doc", "command", "exports"), COMMANDS, ids=[f"{d}: {c}" for d, c, _ in COMMANDS]
)
def test_documented_command_works_as_written(tmp_path, doc, command, exports):
    work = copy_workflow(tmp_path / "workflow")
    for name in re.findall(r"--configfile\s+(\S+)", command):
        if not (work / name).exists():
            (work / name).write_text(config_file_from_docs(REPO / doc, name))
    dry_run = re.sub(r"^snakemake\b", "snakemake -n", command)
    script = "\n".join([*exports, dry_run])
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        },
    )
    assert result.returncode == 0, (
        f"{doc} shows a command that fails:\n  {command}\n"
        f"--- stdout ---\n{result.stdout[-3000:]}\n--- stderr ---\n{result.stderr[-5000:]}"
    )
