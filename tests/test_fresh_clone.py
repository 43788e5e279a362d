"""The first hour of a new user: the README's commands, from a fresh clone, leave the clone clean.

The slow test clones the committed ``HEAD`` into a temporary folder, makes a fresh virtual
environment there and runs the README's first two commands, read from the clone's own
README.md: the main job (on the smoke suite instead of the synthetic one, to keep it short) and
the test command (on one small test file). Both must succeed and leave ``git status`` in the
clone empty: results go to git-ignored or user folders, never into tracked files.

The environment is ``python -m venv --system-site-packages``, so the README's
``pip install torch==2.13.0`` finds the torch already installed (elsewhere it downloads it);
``pip install -e .`` still installs the package from the clone, so ``sbbench`` is the clone's.
``$XDG_DATA_HOME`` and ``$XDG_STATE_HOME`` point into the temporary folder, and ``$SBBENCH_*``
is unset, so the run writes no user folder of the person running the test.

The fast test checks that ``.ci/run`` runs exactly the README's test command.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FENCED_BASH = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)
MAIN_JOB = re.compile(r"^(pip install .*&& sbbench score erm --suite synthetic(?: --workers \d+)?)\s*$", re.MULTILINE)
TEST_COMMAND = re.compile(r"^(pip install .*&& python -m pytest -q)\s*$", re.MULTILINE)


def readme_commands(readme: Path) -> tuple[str, str]:
    """The README's first two commands: installing and scoring ERM, then installing and running the tests."""
    blocks = FENCED_BASH.findall(readme.read_text(encoding="utf-8"))
    assert len(blocks) >= 2, f"{readme}: expected the install-and-score and the test code blocks first"
    main_job, test_command = MAIN_JOB.search(blocks[0]), TEST_COMMAND.search(blocks[1])
    assert main_job, f"{readme}: the first code block has no 'pip install ... && sbbench score erm ...' line"
    assert test_command, f"{readme}: the second code block has no 'pip install ... && python -m pytest -q' line"
    return main_job.group(1), test_command.group(1)


def test_ci_runs_exactly_the_readme_test_command() -> None:
    _, test_command = readme_commands(REPO / "README.md")
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    commands = [line for line in ci_lines if line and not line.startswith("#")]
    assert commands[-1] == test_command, f".ci/run's last command is not the README's test command {test_command!r}"


def run(command: str, cwd: Path, env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(["bash", "-c", f"set -euo pipefail; {command}"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"`{command}` failed with exit code {done.returncode}:\n{output[-6000:]}"
    return output


def git_status(clone: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone, capture_output=True,
                          text=True, check=True).stdout


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_readme_commands_work_in_a_fresh_clone(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout of sbbench")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, capture_output=True)
    main_job, test_command = readme_commands(clone / "README.md")
    main_job = main_job.replace("--suite synthetic", "--suite smoke")
    test_command = re.sub(r"python -m pytest -q$", "python -m pytest -q tests/test_registry.py", test_command)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SBBENCH_", "PYTHON", "VIRTUAL_ENV", "PYTEST_", "CONDA"))}
    env |= {"VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "XDG_DATA_HOME": str(tmp_path / "xdg-data"), "XDG_STATE_HOME": str(tmp_path / "xdg-state")}

    run(main_job, clone, env, timeout=900)
    where = run("command -v sbbench && python -c 'import sbbench; print(sbbench.__file__)'", tmp_path, env, 60)
    assert where.splitlines() == [str(venv / "bin" / "sbbench"), str(clone / "sbbench" / "__init__.py")], where
    assert git_status(clone) == "", f"`{main_job}` changed the clone:\n{git_status(clone)}"

    run(test_command, clone, env, timeout=900)
    assert git_status(clone) == "", f"`{test_command}` changed the clone:\n{git_status(clone)}"
