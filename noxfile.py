"""Sessions CI runs (``.ci/run``): lint, type check and tests on every supported Python, the
built package as users get it, and the strict docs build.

``nox -l`` lists them; ``nox -s tests-3.12`` runs one. An interpreter that is missing fails the
session instead of skipping it.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

import nox

PYTHONS = ["3.11", "3.12", "3.13"]
ROOT = Path(__file__).parent
DIST = ROOT / "dist"



def _runs(executable: str | None, version: str) -> bool:
    """Whether ``executable`` is a working interpreter of ``version`` (a pyenv shim for a
    version that is installed but not selected exists on PATH and fails)."""
    if not executable:
        return False
    try:
        out = subprocess.run(
            [executable, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=30, check=False,
        )
    except OSError:
        return False
    return out.returncode == 0 and out.stdout.strip() == version


def _expose_pyenv_pythons() -> None:
    """Make ``python3.X`` resolvable for every version in PYTHONS: where the one on PATH does
    not run (an unselected pyenv shim), link pyenv's own interpreter of that version into
    ``.nox/.pythons`` and put that first on PATH. Links are replaced atomically, so several nox
    processes may start at once, and the venvs made through them keep a valid ``home``. A
    version found nowhere stays missing (its stale link is removed), and its sessions fail
    (``error_on_missing_interpreters``)."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    links = ROOT / ".nox" / ".pythons"
    for version in PYTHONS:
        name = f"python{version}"
        link = links / name
        if _runs(shutil.which(name, path=_path_without(links)), version):
            link.unlink(missing_ok=True)
            continue
        candidates = sorted(
            glob.glob(str(pyenv_root / "versions" / f"{version}.*" / "bin" / name)),
            key=lambda p: [int(x) if x.isdigit() else -1 for x in Path(p).parts[-3].split(".")],
            reverse=True,
        )
        found = next((c for c in candidates if _runs(c, version)), None)
        if found is None:
            link.unlink(missing_ok=True)
            continue
        links.mkdir(parents=True, exist_ok=True)
        temporary = links / f".{name}.{os.getpid()}"
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(found)
        os.replace(temporary, link)
    if links.is_dir():
        os.environ["PATH"] = os.pathsep.join([str(links), _path_without(links)])


def _path_without(directory: Path) -> str:
    return os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p) != directory
    )


_expose_pyenv_pythons()

nox.options.error_on_missing_interpreters = True
# uv makes the many fresh venvs cheap; the wheel sessions use venv + pip, as users do.
nox.options.default_venv_backend = "uv|venv"
# A missing interpreter must fail, never be downloaded.
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")
os.environ.setdefault("UV_PYTHON_PREFERENCE", "only-system")
nox.options.reuse_existing_virtualenvs = False
nox.options.sessions = ["lint", "typecheck", "tests", "build", "wheel", "docs"]


@nox.session(python=PYTHONS)
def lint(session: nox.Session) -> None:
    """ruff over the package, the tests, the benchmarks, this file and the docs hooks."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "upvest_async", "tests", "benchmarks", "noxfile.py", "docs")


@nox.session(python=PYTHONS)
def typecheck(session: nox.Session) -> None:
    """``mypy --strict`` of the package, as this Python sees it. mypy reads the source tree, so
    only the dependencies (the otel and mirror extras, pytest and pytest-asyncio included, for
    the optional modules) and mypy are installed: nothing is built, and the type checks of the three
    Pythons can run side by side."""
    project = nox.project.load_toml("pyproject.toml")["project"]
    extras = project["optional-dependencies"]
    # What the optional modules import: the otel extra (upvest_async.telemetry), the mirror
    # extra (upvest_async.storage: SQLAlchemy, asyncpg, aiosqlite) and, for the pytest plugin
    # (upvest_async.pytest_plugin), pytest and pytest-asyncio from the test extra.
    wanted = ("mypy", "pytest", "pytest-asyncio")
    tools = [d for d in extras["test"] if d.split(">")[0].split("=")[0].strip() in wanted]
    session.install(*project["dependencies"], *extras["otel"], *extras["mirror"], *tools)
    session.run("mypy", "--strict")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole suite (the README's ``pytest``), against loopback servers only (and a
    throwaway PostgreSQL cluster on 127.0.0.1: ``.ci/run`` installs PostgreSQL's server where
    it is missing)."""
    # Not editable: the suite tests the package as installed (tests/conftest.py checks it).
    session.install(".[test]")
    session.run("pytest", "-q", "-p", "no:cacheprovider", *session.posargs)


@nox.session(python=PYTHONS[0])
def build(session: nox.Session) -> None:
    """Build the sdist and the wheel into ``dist/``, ``twine check`` them, and check their
    contents: the wheel is pure Python (``py3-none-any``) and has ``py.typed`` and the sandbox,
    and nothing but the package; the sdist also has the tests and the docs sources
    (``MANIFEST.in``)."""
    shutil.rmtree(DIST, ignore_errors=True)
    session.install("build[uv]>=1", "twine>=5")
    installer = ["--installer", "uv"] if session.venv_backend == "uv" else []
    session.run("python", "-m", "build", *installer, "--outdir", str(DIST))
    wheels = glob.glob(str(DIST / "*.whl"))
    sdists = glob.glob(str(DIST / "*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        session.error(f"expected one wheel and one sdist in dist/, found {wheels + sdists}")
    session.run("twine", "check", "--strict", *wheels, *sdists)
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
    tag = Path(wheels[0]).name.removesuffix(".whl").split("-")[-3:]
    if tag != ["py3", "none", "any"]:
        session.error(f"expected one pure Python wheel (py3-none-any), got the tags {tag}")
    required = {
        "upvest_async/py.typed",
        "upvest_async/__init__.py",
        "upvest_async/sandbox/__init__.py",
        "upvest_async/cli/__init__.py",
    }
    missing = sorted(required - names)
    if missing:
        session.error(f"the wheel lacks {missing}")
    with tarfile.open(sdists[0]) as sdist:
        members = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for needed in ("tests/conftest.py", "tests/fixtures", "docs/reference", "mkdocs.yml"):
        if needed not in members:
            session.error(f"the sdist lacks {needed}")
    leaked = sorted(n for n in names if n.startswith(("tests/", "benchmarks/", "docs/"))
                    or n.endswith((".c", ".so")))
    if leaked:
        session.error(f"the wheel ships files that are not the package: {leaked[:5]}")
    session.log(f"wheel ok: {Path(wheels[0]).name} ({len(names)} files, py.typed included)")


@nox.session(python=PYTHONS, venv_backend="venv")
def wheel(session: nox.Session) -> None:
    """Install the built wheel (not the source tree) into this fresh venv and run it from
    outside the checkout: ``--version`` and the import location, and the main job against the
    embedded sandbox (``--embedded-sandbox``, small tenant). Needs ``nox -s build`` first."""
    wheels = glob.glob(str(DIST / "*.whl"))
    if len(wheels) != 1:
        session.error("no wheel in dist/: run `nox -s build` first")
    session.install(wheels[0])
    expected = Path(wheels[0]).name.split("-")[1]
    workdir = tempfile.mkdtemp(prefix="upvest-wheel-")
    try:
        with session.chdir(workdir):
            # Outside the checkout: `upvest_async` can only come from the installed wheel.
            session.run(
                "python",
                "-c",
                "import upvest_async, sys, pathlib;"
                "p = pathlib.Path(upvest_async.__file__).resolve();"
                f"assert 'site-packages' in p.parts, p;"
                f"assert upvest_async.__version__ == {expected!r}, upvest_async.__version__;"
                "assert (p.parent / 'py.typed').is_file();"
                "print('imported', upvest_async.__version__, 'from', p.parent)",
            )
            out = session.run("upvest-async", "--version", silent=True)
            if not isinstance(out, str) or expected not in out:
                session.error(f"`upvest-async --version` printed {out!r}, expected {expected}")
            session.log(out.strip())
            # Empty counts as unset: --embedded-sandbox refuses a configured UPVEST_API_*.
            env = {k: "" for k in os.environ if k.startswith("UPVEST_API_")}
            session.run(
                "upvest-async",
                "export-positions",
                "--embedded-sandbox",
                "--out",
                "positions.jsonl",
                "--sandbox-accounts",
                "3",
                "--sandbox-positions",
                "250",
                env=env,
            )
            lines = Path(workdir, "positions.jsonl").read_text().splitlines()
            if len(lines) != 3 * 250:
                session.error(f"expected 750 positions from the wheel's export, got {len(lines)}")
            session.log(f"export-positions from the wheel: {len(lines)} positions")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@nox.session(python=PYTHONS[0])
def docs(session: nox.Session) -> None:
    """``mkdocs build --strict``: a broken cross-reference or a public name without a
    docstring fails it (see ``docs/hooks.py``)."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / "site"))
