"""Which of the package's modules a script or module uses, read from its import statements.

What makes a step rerun (the rules' ``package_sources``, workflow/rules/common.smk) and what a
checkpoint's code fingerprint covers (``training.CODE``) are derived here rather than listed
by hand: every ``from mnistflow import x``, ``from mnistflow.x import y``, ``import
mnistflow.x`` and relative import, anywhere in the file (inside functions too: a step may
load a module only on some path), followed through the modules they name.
Standard library only, and nothing is imported: the import statements are parsed (ast).
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

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
