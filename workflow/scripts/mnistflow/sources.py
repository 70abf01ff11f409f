"""Which of the package's modules a script or module uses, read from its import statements.

What makes a step rerun (the rules' ``code_stamp``, workflow/rules/common.smk, written by
``write_code_stamp``) and what a checkpoint's code fingerprint covers (``training.CODE``) are
derived here rather than listed by hand: every ``from mnistflow import x``, ``from
mnistflow.x import y``, ``import mnistflow.x`` and relative import, anywhere in the file
(inside functions too: a step may load a module only on some path), followed through the
modules they name. Standard library only (and the package's atomic), and nothing is imported
from the files read: the import statements are parsed (ast).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import re
from pathlib import Path

from mnistflow import atomic

PACKAGE = "mnistflow"
PACKAGE_DIR = Path(__file__).resolve().parent


# A line that starts an import statement, with a parenthesised name list's other lines.
# Only these are parsed, at every Snakemake start: for the seven scripts, 0.03-0.09 s against
# 0.2-0.9 s for the whole files' trees (medians, 2-core Intel Xeon VM at load 15-20). A
# docstring line that reads like an import can only add a module, never hide one
# (tests/test_sources.py compares with the whole trees' imports).
_IMPORT_LINE = re.compile(
    r"^[ \t]*(?:from[ \t]+[\w.]+[ \t]+import[ \t]*\([^)]*\)|(?:from|import)[ \t][^\n]*)", re.M
)


def _import_statements(text: str) -> list[ast.stmt]:
    statements = []
    for match in _IMPORT_LINE.finditer(text.replace("\\\n", " ")):
        try:
            statements += ast.parse(match.group().strip()).body
        except SyntaxError:  # prose in a docstring
            pass
    return statements


def imported_names(statements, package_dir: Path) -> set[str]:
    """Module names (x of mnistflow.x) that the import statements among ``statements`` name."""
    names = set()
    for node in statements:
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == PACKAGE and len(parts) > 1:
                    names.add(parts[1])
        elif isinstance(node, ast.ImportFrom):
            parts = node.module.split(".") if node.module else []
            if node.level:  # from . import x, from .x import y: within the package
                parts = [PACKAGE, *parts]
            if parts[:1] != [PACKAGE]:
                continue
            if len(parts) > 1:
                names.add(parts[1])
            else:  # from mnistflow import x, y: modules, or names from __init__
                names |= {a.name for a in node.names if (package_dir / f"{a.name}.py").exists()}
    return names


@functools.cache
def _direct(path: Path, package_dir: Path) -> frozenset[str]:
    return frozenset(imported_names(_import_statements(path.read_text()), package_dir))


def modules_used(path: str | Path, package_dir: str | Path = PACKAGE_DIR) -> list[str]:
    """The package's modules the file at ``path`` imports, directly or through each other,
    sorted (a module's own name included when ``path`` is one of them). ``__init__`` is not
    listed: it only quiets TensorFlow's start-up messages."""
    package_dir = Path(package_dir).resolve()
    path = Path(path).resolve()
    found: set[str] = {path.stem} if path.parent == package_dir else set()
    pending = [path]
    while pending:
        for name in _direct(pending.pop(), package_dir):
            module = package_dir / f"{name}.py"
            if name not in found and module.exists():
                found.add(name)
                pending.append(module)
    return sorted(found)


def module_files(path: str | Path, package_dir: str | Path = PACKAGE_DIR) -> list[Path]:
    """The files of modules_used(path), in ``package_dir`` as given: what the code at ``path``
    runs of the package."""
    package_dir = Path(package_dir)
    return [package_dir / f"{name}.py" for name in modules_used(path, package_dir)]


def code_files(scripts, package_dir: str | Path = PACKAGE_DIR) -> list[Path]:
    """The scripts and every package module they run, once each, sorted."""
    files = {Path(script) for script in scripts}
    for script in scripts:
        files.update(module_files(script, package_dir))
    return sorted(files)


def write_code_stamp(stamp: str | Path, scripts, package_dir: str | Path = PACKAGE_DIR) -> Path:
    """Write ``stamp``: a line ``<sha256>  <path>`` for each of ``code_files(scripts)``, paths
    relative to the scripts' folder. Rewritten (atomically) only when a line changes, so it is
    newer than a step's outputs exactly when the code the step runs changed since they were
    made; a file touched or checked out again unchanged leaves it alone.

    A stamp written anew (none there: a fresh working directory, or .snakemake deleted) takes
    the newest covered file's modification time: with no record of the code the outputs were
    made with, those times decide, as they would for the files themselves as inputs.
    """
    stamp, package_dir = Path(stamp), Path(package_dir)
    files = code_files(scripts, package_dir)
    base = package_dir.resolve().parent
    text = "".join(
        f"{hashlib.sha256(path.read_bytes()).hexdigest()}  "
        f"{path.resolve().relative_to(base).as_posix()}\n"
        for path in files
    )
    if stamp.is_file():
        if stamp.read_text() == text:
            return stamp
        newest = None  # changed code: now
    else:
        newest = max(path.stat().st_mtime_ns for path in files)
    with atomic.atomic_path(stamp) as tmp:
        tmp.write_text(text)
        if newest is not None:
            os.utime(tmp, ns=(newest, newest))
    return stamp
