"""Other Python interpreters: venvs cached in .venvs/, and the unit tests run under each.

The Function App runs on whichever Python the deployment picks (3.11 to 3.14 on Flex
Consumption), so ``make test`` also runs the unit tests (everything but tests/integration and
tests/devstack, which need the local stack) under every other CPython 3.11+ pyenv has. A venv
is rebuilt only when its interpreter or requirement files change.

    python -m tests.interpreters      # what `make test` runs after the main suite
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / ".venvs"
MINIMUM = (3, 11)
# What the unit tests import beyond the app and its command line, pinned in requirements-dev.txt.
UNIT_TEST_PACKAGES = frozenset(
    {"pytest", "trustme", "pyjwt", "tree-sitter", "tree-sitter-bicep", "tree-sitter-powershell",
     "pyyaml", "pathspec", "jmespath"}
)
# Tests whose subject does not depend on this interpreter: a bash script, the package,
# which test_package.py indexes in the worker's own 3.13+ venv, and the benchmark's fault
# profile and its stopping, which run with the development venv (its fault fronts need
# aiohttp) and the local stack.
SAME_UNDER_EVERY_PYTHON = ("tests/test_tenant_script.py", "tests/test_package.py",
                           "tests/test_bench_faults.py", "tests/test_bench_stop.py")
INSTALL_TIMEOUT = 600
TEST_TIMEOUT = 900


class InterpreterError(Exception):
    """Raised when a needed interpreter is missing or its venv cannot be built."""


def pyenv_interpreters() -> dict[tuple[int, int], Path]:
    """The newest CPython of each minor version from 3.11 on that pyenv has, by (major, minor)."""
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise InterpreterError("pyenv is not available: install it, or run the tests with one Python") from e
    found: dict[tuple[int, int], tuple[tuple[int, ...], Path]] = {}
    for directory in sorted((Path(root.stdout.strip()) / "versions").glob("*")):
        match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", directory.name)
        python = directory / "bin" / "python3"
        if match is None or not python.exists():
            continue
        version = tuple(int(part) for part in match.groups())
        minor = (version[0], version[1])
        if minor >= MINIMUM and (minor not in found or found[minor][0] < version):
            found[minor] = (version, python)
    return {minor: python for minor, (_, python) in sorted(found.items())}


def interpreter_for(minimum: tuple[int, int]) -> Path:
    """An interpreter of at least ``minimum``: this one, or pyenv's oldest that is new enough."""
    if sys.version_info[:2] >= minimum:
        return Path(sys.executable)
    for minor, python in pyenv_interpreters().items():
        if minor >= minimum:
            return python
    raise InterpreterError(f"no Python {minimum[0]}.{minimum[1]} or later: install one with pyenv")


def _requirement_files(arguments: list[str]) -> list[Path]:
    """Every requirements file ``pip install`` would read, following ``-r`` lines."""
    files: list[Path] = []
    pending = [ROOT / arguments[i + 1] for i, arg in enumerate(arguments) if arg == "-r"]
    while pending:
        path = pending.pop()
        files.append(path)
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("-r "):
                pending.append(path.parent / line.split(maxsplit=1)[1])
    return sorted(files)


def ensure_venv(python: Path, name: str, arguments: list[str]) -> Path:
    """The Python of venv ``.venvs/<name>`` with ``pip install <arguments>``; rebuilt when they change."""
    directory = VENVS / name
    version = subprocess.run([str(python), "--version"], capture_output=True, text=True, check=True, timeout=30)
    digest = hashlib.sha256(version.stdout.encode() + "\0".join(arguments).encode())
    for path in _requirement_files(arguments):
        digest.update(path.read_bytes())
    stamp = directory / ".installed"
    venv_python = directory / "bin" / "python"
    if stamp.exists() and stamp.read_text(encoding="utf-8") == digest.hexdigest() and venv_python.exists():
        return venv_python
    shutil.rmtree(directory, ignore_errors=True)
    try:
        subprocess.run([str(python), "-m", "venv", str(directory)], check=True, timeout=INSTALL_TIMEOUT)
        subprocess.run(
            [str(venv_python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
             *arguments],
            check=True, cwd=ROOT, timeout=INSTALL_TIMEOUT,
        )
    except subprocess.SubprocessError as e:
        raise InterpreterError(f"could not build {directory} with {python}: see pip's output above") from e
    stamp.write_text(digest.hexdigest(), encoding="utf-8")
    return venv_python


def unit_test_requirements() -> list[str]:
    """pip arguments for the unit tests: the app, its command line, and the test tools' pins."""
    pins = [
        line.strip()
        for line in (ROOT / "requirements-dev.txt").read_text(encoding="utf-8").splitlines()
        if re.split(r"[=<>;\s]", line.strip(), maxsplit=1)[0].lower() in UNIT_TEST_PACKAGES
    ]
    return ["-r", "requirements-cli.txt", *pins]


def run_unit_tests(venv_python: Path) -> int:
    """pytest's exit code for the unit tests under one venv's Python."""
    command = [str(venv_python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "--ignore=tests/integration", "--ignore=tests/devstack",
               *(f"--ignore={path}" for path in SAME_UNDER_EVERY_PYTHON)]
    return subprocess.run(command, cwd=ROOT, timeout=TEST_TIMEOUT, check=False).returncode


def main() -> int:
    """Runs the unit tests under every other interpreter; non-zero if any run fails."""
    current = sys.version_info[:2]
    others = {minor: python for minor, python in pyenv_interpreters().items() if minor != current}
    if not others:
        print("no other Python 3.11+ in pyenv: the unit tests ran under this one only", flush=True)
    failed: list[str] = []
    for (major, minor), python in others.items():
        label = f"{major}.{minor}"
        started = time.monotonic()
        venv_python = ensure_venv(python, f"unit-{label}", unit_test_requirements())
        built = time.monotonic()
        code = run_unit_tests(venv_python)
        print(f"Python {label}: venv ready in {built - started:.0f} s, unit tests in "
              f"{time.monotonic() - built:.0f} s, exit {code}", flush=True)
        if code != 0:
            failed.append(label)
    if failed:
        print(f"unit tests failed under Python {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
