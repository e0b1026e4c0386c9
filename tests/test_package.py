"""The deployment package: what .funcignore ships, what it imports, which Pythons it runs on.

The package is indexed by the real Functions Python worker (azure-functions-runtime, Python
3.13+) in a venv holding requirements.txt and the worker only, as on Azure: a missing
dependency, a binding the worker rejects or a CLI-only import on the function path fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pathspec
import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from tests.bicep_evaluator import BicepFile
from tests.interpreters import ensure_venv, interpreter_for

ROOT = Path(__file__).resolve().parent.parent
FUNCIGNORE = ROOT / ".funcignore"
PYTHON_VERSIONS = ("3.11", "3.12", "3.13", "3.14")  # what Flex Consumption offers from 3.11 on
# Paths that exist on a developer machine or in CI and must never reach the Function App.
NEVER_SHIPPED = (
    ".azure/mailferry-prod/.env",
    "mailferry.egg-info/PKG-INFO",
    ".venv/bin/python",
    ".venv-3.13/bin/python",
    ".venvs/unit-3.12/bin/python",
    ".python_packages/lib/site-packages/x.py",
    "docs/settings.md",
    "tests/test_poll.py",
    "devstack/stack.py",
    "bench/__main__.py",
    "infra/bicep/main.bicep",
    ".ci/run",
    ".devstack/demo/state.json",
    ".github/workflows/ci.yml",
    "shared/__pycache__/entry.cpython-311.pyc",
    "requirements-dev.txt",
    "requirements-cli.txt",
    "requirements-worker.txt",
    "pyproject.toml",
    "Makefile",
    "README.md",
    "local.settings.json",
    "local.settings.json.example",
    "build/lib/shared/entry.py",
)
ALWAYS_SHIPPED = ("function_app.py", "host.json", "requirements.txt", "shared/entry.py", "shared/adapters/blob.py")


def ignore_spec() -> pathspec.GitIgnoreSpec:
    """.funcignore read with gitignore's rules, as Core Tools and azd read it."""
    return pathspec.GitIgnoreSpec.from_lines(FUNCIGNORE.read_text(encoding="utf-8").splitlines())


def shipped_files(root: Path, spec: pathspec.GitIgnoreSpec) -> Iterator[str]:
    """Paths under ``root`` that .funcignore lets through, directories pruned as they are ignored."""
    for directory, subdirectories, files in os.walk(root):
        relative = Path(directory).relative_to(root).as_posix()
        prefix = "" if relative == "." else f"{relative}/"
        subdirectories[:] = [d for d in subdirectories if not spec.match_file(f"{prefix}{d}/")]
        yield from (f"{prefix}{f}" for f in files if not spec.match_file(f"{prefix}{f}"))


@pytest.mark.parametrize("path", NEVER_SHIPPED)
def test_funcignore_keeps_out_what_the_functions_never_import(path: str) -> None:
    assert ignore_spec().match_file(path), path


@pytest.mark.parametrize("path", ALWAYS_SHIPPED)
def test_funcignore_ships_the_app(path: str) -> None:
    assert not ignore_spec().match_file(path), path


def test_the_package_of_this_checkout_is_the_app_and_nothing_else() -> None:
    shipped = set(shipped_files(ROOT, ignore_spec()))
    app = {"function_app.py", "host.json", "requirements.txt"}
    assert app <= shipped
    assert {p for p in shipped if p not in app and not (p.startswith("shared/") and p.endswith(".py"))} == set()


def test_the_cli_library_is_not_a_deployed_requirement() -> None:
    deployed = {Requirement(line).name for line in requirement_lines(ROOT / "requirements.txt")}
    assert "rich" not in deployed
    cli = {Requirement(line).name for line in requirement_lines(ROOT / "requirements-cli.txt")}
    assert "rich" in cli


def test_importing_the_function_app_never_imports_the_cli_library() -> None:
    probe = "import sys, function_app; print('rich' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.strip() == "False"


def requirement_lines(path: Path) -> list[str]:
    """The requirement lines of a requirements file (no comments, no -r)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("-")]


# --- The real worker indexes the package ---------------------------------------------------------


@pytest.fixture(scope="module")
def worker_python() -> Path:
    """Python 3.13+ in a venv with requirements.txt and the Functions worker only (cached)."""
    return ensure_venv(interpreter_for((3, 13)), "worker", ["-r", "requirements-worker.txt"])


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The deployment package: this checkout less what .funcignore keeps out."""
    target = tmp_path_factory.mktemp("package")
    for relative in shipped_files(ROOT, ignore_spec()):
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target / relative)
    return target


def test_the_functions_worker_indexes_the_package(worker_python: Path, package: Path) -> None:
    result = subprocess.run(
        [str(worker_python), str(ROOT / "tests" / "worker_index_probe.py"), str(package)],
        cwd=package, capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["python"] >= [3, 13]
    functions = report["functions"]
    assert set(functions) == {"poll_mailboxes", "poll_mailbox"}
    [timer] = functions["poll_mailboxes"]
    assert (timer["type"], timer["direction"], timer["schedule"]) == ("timerTrigger", "IN", "%POLL_SCHEDULE%")
    assert timer["runOnStartup"] is False and timer["useMonitor"] is True
    [queue] = functions["poll_mailbox"]
    assert (queue["type"], queue["queueName"], queue["connection"]) == ("queueTrigger", "%POLL_QUEUE%", "MAIL_STORAGE")
    # Installed from requirements.txt alone: the command line's library is not there to import.
    assert report["rich_installed"] is False
    assert report["rich_imported"] is False


# --- Python versions ---------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["main.bicep", "modules/function-app.bicep"])
def test_bicep_allows_exactly_the_flex_pythons_from_3_11(module: str) -> None:
    file = BicepFile(ROOT / "infra" / "bicep" / module)
    assert file.decorator_value("pythonVersion", "allowed") == list(PYTHON_VERSIONS)


def installed_requires_python(python: Path) -> tuple[str, str]:
    """The azure-functions version installed for an interpreter, and the Python it declares."""
    probe = ("import importlib.metadata as m; d = m.distribution('azure-functions'); "
             "print(d.version); print(d.metadata['Requires-Python'] or '')")
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    version, requires = out.stdout.splitlines()
    return version, requires


def test_each_flex_python_gets_one_azure_functions_pin_that_declares_it(worker_python: Path) -> None:
    pins = [Requirement(line) for line in requirement_lines(ROOT / "requirements.txt")
            if Requirement(line).name == "azure-functions"]
    # What the pinned releases declare, read from those installed here (this Python's and the
    # worker's 3.13+); pip refused neither, and each must admit every Python its marker gives it.
    declared = dict(installed_requires_python(p) for p in (Path(sys.executable), worker_python))
    pinned = {str(next(iter(p.specifier))).lstrip("=") for p in pins}
    assert set(declared) <= pinned
    assert len(declared) == (1 if sys.version_info >= (3, 13) else 2)
    for python in PYTHON_VERSIONS:
        applying = [p for p in pins if p.marker is None or p.marker.evaluate({"python_version": python})]
        assert len(applying) == 1, python
        version = str(next(iter(applying[0].specifier))).lstrip("=")
        if version in declared:
            assert SpecifierSet(declared[version]).contains(f"{python}.0"), (python, version, declared[version])
