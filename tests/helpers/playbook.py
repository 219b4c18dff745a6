"""ccq's playbooks run from the controller, as a user runs them (the tests' one way to do it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_playbook(*extra: str, playbook: str = "site.yml", inventory: str | None = None,
                 env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """``ansible-playbook -i <inventory> <playbook> <extra>`` from the project directory.

    The inventory defaults to the Molecule scenario's. CEREBRAS_API_KEY is taken out of the
    environment, so a test sees only the key sources it sets up itself (``env`` adds to it).
    """
    if inventory is None:
        inventory = str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)
    run_env = {k: v for k, v in os.environ.items() if k != "CEREBRAS_API_KEY"}
    run_env.update(ANSIBLE_NOCOLOR="1", **(env or {}))
    ansible_playbook = Path(sys.executable).with_name("ansible-playbook")
    command = str(ansible_playbook) if ansible_playbook.exists() else "ansible-playbook"
    return subprocess.run([command, "-i", inventory, playbook, *extra], cwd=REPO, env=run_env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def play_output(result: subprocess.CompletedProcess[str]) -> str:
    """A run's stdout and stderr as one line: ansible-core 2.19 prints failures on stderr under
    Molecule's settings and wraps long lines."""
    return " ".join((result.stdout + result.stderr).split())
