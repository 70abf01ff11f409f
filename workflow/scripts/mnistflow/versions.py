"""Versions of the software that produced a result, recorded beside it."""

from __future__ import annotations

import importlib.metadata
import platform

PACKAGES = ("tensorflow", "tensorflow-cpu", "keras", "numpy", "h5py", "scikit-learn", "snakemake")


def software_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions
