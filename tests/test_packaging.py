"""The package as it is installed: one version everywhere, package data, shell completion.

The built wheel itself is checked by ``nox -s build wheel`` (``.ci/run``): ``twine check``,
``py.typed`` in it, and the main job run from a fresh venv of every supported Python.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

import upvest_async
from upvest_async.cli import main

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_version_has_one_source() -> None:
    project = PYPROJECT["project"]
    assert "version" not in project
    assert "version" in project["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "upvest_async.__version__"
    }
    assert upvest_async.__version__ == importlib.metadata.version("upvest-async")


def test_version_option_prints_the_package_version() -> None:
    result = CliRunner().invoke(main, ["--version"], prog_name="upvest-async")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"upvest-async, version {upvest_async.__version__}"


def test_py_typed_is_package_data() -> None:
    assert (Path(upvest_async.__file__).parent / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["upvest_async"]


def test_the_docs_tools_are_an_extra() -> None:
    docs = " ".join(PYPROJECT["project"]["optional-dependencies"]["docs"])
    for tool in ("mkdocs", "mkdocs-material", "mkdocstrings[python]"):
        assert tool in docs


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("bash", "complete -o nosort -F"), ("zsh", "#compdef upvest-async"), ("fish", "complete")],
)
def test_completion_scripts_are_produced(shell: str, marker: str) -> None:
    result = CliRunner().invoke(
        main, [], prog_name="upvest-async", env={"_UPVEST_ASYNC_COMPLETE": f"{shell}_source"}
    )
    assert result.exit_code == 0, result.output
    assert "_upvest_async_completion" in result.output
    assert marker in result.output
    assert "_UPVEST_ASYNC_COMPLETE" in result.output


def test_completion_completes_commands_and_options() -> None:
    def complete(words: str) -> list[str]:
        env = {
            "_UPVEST_ASYNC_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - 1),
        }
        result = CliRunner().invoke(main, [], prog_name="upvest-async", env=env)
        assert result.exit_code == 0, result.output
        return [line.split(",", 1)[1] for line in result.output.splitlines()]

    assert complete("upvest-async ex") == ["export-positions"]
    assert set(complete("upvest-async re")) == {"rebalance"}
    assert "--format" in complete("upvest-async export-positions --for")


def test_the_installed_command_prints_its_completion_script() -> None:
    script = shutil.which("upvest-async", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the upvest-async console script is not installed next to this Python")
    env = {**os.environ, "_UPVEST_ASYNC_COMPLETE": "bash_source"}
    out = subprocess.run(
        [script], env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "_upvest_async_completion()" in out
    assert "complete -o nosort -F _upvest_async_completion upvest-async" in out
