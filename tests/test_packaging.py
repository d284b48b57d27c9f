"""pyproject.toml and environment.yml list the same dependencies with the same version ranges."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: conda-forge names that differ from the PyPI ones (PyPI name -> conda names).
CONDA_NAMES = {"dask[distributed]": ("dask-core", "distributed"), "isal": ("python-isal",)}


def _split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*(.*)$", requirement).groups()
    return name.lower(), spec.replace(" ", "")


def _pyproject() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = {}
    for req in project["dependencies"] + project["optional-dependencies"]["dev"]:
        name, spec = _split(req)
        for conda in CONDA_NAMES.get(name, (name,)):
            wanted[conda] = spec
    return wanted


def _environment() -> dict[str, str]:
    listed = {}
    for line in (ROOT / "environment.yml").read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\s+- (?!pip:?$)(\S.*)$", line)
        if m and not m.group(1).startswith(("conda-forge", "python>", "python=")):
            name, spec = _split(m.group(1))
            listed[name] = spec
    return listed


def test_environment_and_pyproject_list_the_same_dependencies():
    wanted, listed = _pyproject(), _environment()
    assert "python-isal" in wanted and "numpy" in listed  # both parsers see the files
    missing = sorted(set(wanted) - set(listed))
    extra = sorted(set(listed) - set(wanted))
    differ = sorted(k for k in set(wanted) & set(listed) if wanted[k] != listed[k])
    assert not (missing or extra or differ), f"missing {missing}, extra {extra}, other ranges {differ}"
