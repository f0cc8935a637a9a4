"""The built package works where users install it: `python -m build` makes the sdist and the
wheel from the checkout's files, and the wheel goes into fresh venvs outside the checkout, on
every Python version the package claims: once without extras, once with all of them."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import sagaway
from tests.conftest import postgres_schema, require
from tests.packaging import (
    USER_EXTRAS,
    interpreter,
    is_public,
    module_names,
    package_files,
    public_packages,
    supported_pythons,
)
from tests.processes import ROOT
from tests.test_readme import tour_code

# Building and installing take minutes on a machine busy with other work, not seconds.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

THIS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
VERSIONS = supported_pythons()

# Imports every module of the installed sagaway; prints where sagaway is and each failure.
IMPORT_ALL = textwrap.dedent(
    """
    import importlib, json, sys
    import sagaway

    failed = {}
    for name in json.loads(sys.argv[1]):
        try:
            importlib.import_module(name)
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
    print(json.dumps({"file": sagaway.__file__, "failed": failed}))
    """
)


def run(command: list[str], **options) -> subprocess.CompletedProcess[str]:
    options.setdefault("timeout", 300)
    return subprocess.run(command, capture_output=True, text=True, **options)


def checked(command: list[str], **options) -> subprocess.CompletedProcess[str]:
    out = run(command, **options)
    assert out.returncode == 0, f"{' '.join(command)} failed:\n{out.stdout}\n{out.stderr}"
    return out


@pytest.fixture(scope="session")
def shared(tmp_path_factory) -> Path:
    """A folder every xdist worker of this run shares: the wheel and the venvs are made once."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def made_once(name: Path, done: Path) -> Iterator[bool]:
    """Hold the lock `name`.lock across processes and yield whether `done` is missing: the
    caller then makes `name`, creating `done` last."""
    with open(f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield not done.exists()


@pytest.fixture(scope="session")
def dist(shared) -> Path:
    """The folder with the sdist and the wheel that `python -m build` made (the wheel is built
    from the sdist) out of a copy of the checkout's files, so the checkout gets no build
    leftovers."""
    with made_once(shared / "dist", shared / "dist") as to_make:
        if to_make:
            source = shared / "source"
            for name in [*package_files(), "pyproject.toml", "README.md"]:
                (source / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / name, source / name)
            checked([sys.executable, "-m", "build", "--outdir", str(source / "dist"), str(source)])
            (source / "dist").rename(shared / "dist")
    return shared / "dist"


def wheel_of(dist: Path) -> Path:
    (wheel,) = dist.glob("*.whl")
    return wheel


class Venv:
    """A venv outside the checkout with the wheel installed, in which commands run with no
    trace of the checkout in their environment."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.python = str(path / "bin" / "python")
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        self.env["PATH"] = f"{path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"

    def run(self, command: list[str], cwd: Path, **options) -> subprocess.CompletedProcess[str]:
        return run(command, cwd=cwd, env=self.env, **options)

    def script(
        self, code: str, cwd: Path, *args: str, **options
    ) -> subprocess.CompletedProcess[str]:
        (cwd / "script.py").write_text(code)
        return self.run([self.python, "script.py", *args], cwd, **options)

    def import_all(self, names: list[str], cwd: Path) -> dict[str, str]:
        """Import each module; return the failures (module -> error)."""
        out = self.script(IMPORT_ALL, cwd, json.dumps(names))
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert Path(report["file"]).is_relative_to(self.path), f"not the wheel's: {report}"
        return report["failed"]


@pytest.fixture(scope="session")
def installed(shared, dist) -> Callable[[str], tuple[Venv, dict[str, Any]]]:
    """`installed(version)`: a venv of that Python version in which the wheel was installed
    without extras, checked (the second item: `sagaway --version`'s output, the public modules
    that failed to import, each extra's probe), then given every extra users can install."""

    def make(version: str) -> tuple[Venv, dict[str, Any]]:
        home = shared / f"py{version}"
        with made_once(home, home / "ready") as to_make:
            if to_make:
                shutil.rmtree(home, ignore_errors=True)  # what a failed attempt left
                home.mkdir()
                make_venv(version, home, wheel_of(dist))
                (home / "ready").touch()
        return Venv(home / "venv"), json.loads((home / "without-extras.json").read_text())

    return make


def make_venv(version: str, home: Path, wheel: Path) -> None:
    """A venv in `home` with `wheel` installed, first without extras (what it did then goes to
    without-extras.json), then with every extra users can install."""
    python = interpreter(version)
    require(
        python is not None,
        f"no Python {version} here, which pyproject.toml's classifiers claim: install one "
        f"where `python{version}` or pyenv's versions/ finds it",
    )
    checked([str(python), "-m", "venv", "--without-pip", str(home / "venv")])
    venv = Venv(home / "venv")
    # The machine's pip, for the venv's Python: one pip cache serves every version.
    pip = [sys.executable, "-m", "pip", "--python", venv.python, "install", "--quiet"]
    checked([*pip, str(wheel)])
    cwd = home / "work"
    cwd.mkdir()
    public = [name for name in module_names(package_files()) if is_public(name)]
    probes = {extra: venv.script(about["probe"], cwd) for extra, about in USER_EXTRAS.items()}
    without_extras = {
        "version": venv.run(["sagaway", "--version"], cwd).stdout,
        "import_failures": venv.import_all(public, cwd),
        "probes": {extra: [out.returncode, out.stderr] for extra, out in probes.items()},
    }
    (home / "without-extras.json").write_text(json.dumps(without_extras))
    checked([*pip, f"{wheel}[{','.join(USER_EXTRAS)}]"])


def test_the_sdist_and_the_wheel_carry_every_file_of_the_package(dist):
    files = package_files()
    assert any(name.endswith(".sql") for name in files) and "sagaway/py.typed" in files
    with zipfile.ZipFile(wheel_of(dist)) as wheel:
        names = wheel.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        headers = wheel.read(metadata).decode()
    carried = {n for n in names if ".dist-info/" not in n}
    missing = set(files) - carried
    assert not missing, f"the wheel lacks {sorted(missing)}: see [tool.setuptools.package-data]"
    assert carried == set(files), f"the wheel has more: {sorted(carried - set(files))}"
    assert f"Version: {sagaway.__version__}\n" in headers
    for extra in USER_EXTRAS:
        assert f"Provides-Extra: {extra}\n" in headers
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        inside = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert set(files) | {"pyproject.toml", "README.md"} <= inside


@pytest.mark.parametrize("version", VERSIONS)
def test_without_extras_each_module_imports_or_names_the_extra_it_needs(installed, version):
    _, bare = installed(version)
    assert bare["version"] == f"sagaway {sagaway.__version__}\n"
    failed = bare["import_failures"]
    commands = [f"pip install 'sagaway[{extra}]'" for extra in USER_EXTRAS]
    unexplained = {m: e for m, e in failed.items() if not any(c in e for c in commands)}
    assert not unexplained, "modules that fail without naming an extra to install"
    assert "sagaway" not in failed and "sagaway.cli" not in failed


@pytest.mark.parametrize("version", VERSIONS)
def test_without_its_extra_a_feature_fails_in_one_line_naming_the_extra(installed, version):
    _, bare = installed(version)
    assert set(bare["probes"]) == set(USER_EXTRAS)
    for extra, (returncode, stderr) in bare["probes"].items():
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        # "module.Error: message" on the last line: the whole message is on that one line.
        one_line = re.fullmatch(rf"[\w.]+: .+: pip install 'sagaway\[{extra}\]'", last)
        assert returncode != 0 and one_line, f"the {extra} probe: {stderr}"


@pytest.mark.parametrize("version", VERSIONS)
def test_with_the_extras_every_module_and_public_name_imports_from_the_wheel(
    installed, version, tmp_path
):
    full, _ = installed(version)
    assert full.import_all(module_names(package_files()), tmp_path) == {}
    check = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    package = importlib.import_module(name)\n"
        "    for export in package.__all__:\n"
        "        getattr(package, export)\n"
    )
    packages = public_packages()
    assert {"sagaway", "sagaway.resilience", "sagaway.observe"} <= set(packages)
    out = full.script(check, tmp_path, *packages)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("version", VERSIONS)
def test_the_readme_tour_runs_from_the_installed_wheel(installed, version, tmp_path):
    full, _ = installed(version)
    out = full.script(tour_code(), tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "'parcel': 'parcel-o-1'" in lines[0] and lines[1] == "compensated card declined"
    listing = full.run(["sagaway", "runs", "list", "--db", "shop.db", "--json"], tmp_path)
    assert listing.returncode == 0, listing.stderr
    statuses = sorted(run["status"] for run in json.loads(listing.stdout))
    assert statuses == ["compensated", "succeeded"]


@pytest.mark.postgres
@pytest.mark.parametrize("version", VERSIONS)
def test_a_postgres_store_works_from_the_installed_wheel(installed, version, tmp_path):
    full, _ = installed(version)
    code = textwrap.dedent(
        """
        import sys
        from sagaway import App, Permanent, SagaCompensated

        app = App(sys.argv[1])
        undone = []


        @app.step()
        def reserve(sku: str) -> str:
            return f"r-{sku}"


        @reserve.compensation
        def release(sku: str, result: str | None = None) -> None:
            undone.append(result)


        @app.step()
        def charge(amount: int) -> None:
            if amount > 100:
                raise Permanent("declined")


        @app.saga()
        def order(ctx, sku: str, amount: int) -> str:
            reservation = reserve(sku)
            charge(amount)
            return reservation


        with app:
            print(app.start(order, "mug", 10).result(timeout=60))
            try:
                app.start(order, "cup", 500).result(timeout=60)
            except SagaCompensated as exc:
                print("compensated", exc.error, undone)
        """
    )
    with postgres_schema() as url:
        out = full.script(code, tmp_path, url, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "r-mug\ncompensated declined ['r-cup']\n"


@pytest.mark.parametrize("version", [THIS_PYTHON])
def test_the_demo_runs_from_the_installed_wheel(installed, version, tmp_path):
    # Once, on the Python running the tests: it takes a while, and the other versions run the
    # same code through the tour and the PostgreSQL test.
    full, _ = installed(version)
    out = full.run(["sagaway", "demo", "--dir", "demo-data"], tmp_path, timeout=300)
    assert out.returncode == 0, f"{out.stdout}\n{out.stderr}"
