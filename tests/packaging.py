"""What pyproject.toml and the checkout declare about the package, read once for the tests:
the files and modules it ships, its extras, its public packages and its Python versions."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.processes import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SAGAWAY = PYPROJECT["tool"]["sagaway"]
USER_EXTRAS: dict[str, dict[str, str]] = SAGAWAY["extras"]


def package_files() -> list[str]:
    """Every file of sagaway/ a commit would hold (tracked, or new and not ignored), as paths
    relative to the checkout: what the sdist and the wheel must carry."""
    if shutil.which("git") and (ROOT / ".git").exists():
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "sagaway"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        return sorted(name for name in listed if name and (ROOT / name).is_file())
    return sorted(  # not a git checkout: every file but the interpreter's caches
        str(p.relative_to(ROOT))
        for p in (ROOT / "sagaway").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )


def module_names(files: list[str]) -> list[str]:
    """The importable modules among `files` (a `__main__` is left out: importing it runs it)."""
    names = []
    for name in files:
        if name.endswith(".py") and not name.endswith("__main__.py"):
            parts = name.removesuffix(".py").split("/")
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names)


def is_public(module: str) -> bool:
    """A module no part of whose name starts with `_`."""
    return not any(part.startswith("_") for part in module.split("."))


def public_packages() -> list[str]:
    """The public packages pyproject.toml declares, those that exist in the checkout."""
    modules = set(module_names(package_files()))
    return [name for name in SAGAWAY["public-packages"] if name in modules]


def supported_pythons() -> list[str]:
    """The Python versions the package's classifiers claim, e.g. ["3.11", "3.12"]."""
    found = []
    for classifier in PYPROJECT["project"]["classifiers"]:
        match = re.fullmatch(r"Programming Language :: Python :: (3\.\d+)", classifier)
        if match:
            found.append(match.group(1))
    return found


def interpreter(version: str) -> str | None:
    """A working interpreter of `version` (e.g. "3.12") on this machine: this one, one on PATH,
    or one of pyenv's builds; None when there is none."""
    candidates: list[str | None] = []
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        candidates.append(sys.executable)
    candidates.append(shutil.which(f"python{version}"))
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    builds = pyenv.glob(f"{version}.*/bin/python{version}")
    candidates += [str(p) for p in sorted(builds, key=_patch_level, reverse=True)]
    for candidate in filter(None, candidates):
        said = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )  # a pyenv shim for a version that is not selected exists, but fails
        if said.returncode == 0 and said.stdout.strip() == version:
            return candidate
    return None


def _patch_level(path: Path) -> tuple[int, ...]:
    version = path.parent.parent.name
    return tuple(int(part) for part in re.findall(r"\d+", version))
