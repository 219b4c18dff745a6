"""What the fleet tests share: the hosts' settings, the vaulted key, the plays run over
Molecule's inventory the way a team lead runs them (the project's ansible.cfg, the vault
password file, the team's group_vars from inventories/example), and readers of their output.

A module of its own, not conftest: with pytest.ini's pythonpath, `from conftest import`
could find another directory's conftest."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import testinfra
import yaml

from helpers.playbook import run_playbook  # pytest.ini: pythonpath = tests

SCENARIO = Path(__file__).resolve().parents[1]
PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", SCENARIO.parents[1]))

VAULT_PASSWORD_FILE = SCENARIO / "vault-password"
STAND_IN_VARS = SCENARIO / "vars/stand-in.yml"
FAKE_PORT = urlparse(yaml.safe_load(STAND_IN_VARS.read_text())["ccq_cerebras_api_base"]).port
HEALTHY = ("fleet-debian12", "fleet-debian13")
BROKEN = "fleet-broken"
# Each healthy laptop's pipx: its version, and where it keeps its venvs (relative to the home).
PIPX = {"fleet-debian12": ("1.1.0", ".local/pipx/venvs"), "fleet-debian13": ("1.7.1", ".local/share/pipx/venvs")}


def target(name: str):
    """The laptop, as testinfra reaches it."""
    return testinfra.get_host(f"podman://{name}")


def host_vars(name: str) -> dict[str, Any]:
    return yaml.safe_load((SCENARIO / "host_vars" / f"{name}.yml").read_text())


def vault_key() -> str:
    """The Cerebras key the example inventory's vault holds (the test password opens it)."""
    from ansible.constants import DEFAULT_VAULT_ID_MATCH
    from ansible.parsing.vault import VaultLib, VaultSecret

    vault = VaultLib([(DEFAULT_VAULT_ID_MATCH, VaultSecret(VAULT_PASSWORD_FILE.read_bytes().strip()))])
    text = (PROJECT / "inventories/example/group_vars/all/vault.yml").read_text()
    # The value is an inline `!vault |` block: its indented lines are the ciphertext.
    cipher = "\n".join(line.strip() for line in text.split("!vault |", 1)[1].splitlines() if line.strip())
    return vault.decrypt(cipher).decode()


def team_play(playbook: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """``playbook`` over the whole fleet as a team lead runs it; returns the run and its seconds."""
    # The recap and summary are read as plain text: run_playbook turns colour off.
    env = {"ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"),
           "ANSIBLE_VAULT_PASSWORD_FILE": str(VAULT_PASSWORD_FILE)}
    started = time.monotonic()
    result = run_playbook("-e", f"@{STAND_IN_VARS}", *extra, playbook=playbook, env=env, timeout=2400)
    return result, time.monotonic() - started


def tail_from(stdout: str, marker: str) -> str:
    """The recap and the per-host summary, without profile_tasks' timings."""
    start = stdout.rfind(marker)
    text = stdout[start:] if start >= 0 else stdout[-3000:]
    return text.split("TASKS RECAP")[0]


def recap(stdout: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counters per host."""
    return {m.group(1): {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
            for m in re.finditer(r"^(\S+)\s+: (ok=.*)$", stdout[stdout.rfind("PLAY RECAP"):], re.MULTILINE)}


def summary(stdout: str) -> dict[str, str]:
    """host -> its line of plugins/callback/ccq_summary.py ("ready" or "FAILED: reason")."""
    lines = {}
    for line in stdout[stdout.rfind("host(s) ready"):].splitlines()[1:]:
        word, _, rest = line.strip().partition(" ")
        if word not in ("ready", "FAILED"):
            break
        name, _, reason = rest.strip().partition(": ")
        lines[name] = word + (f": {reason}" if reason else "")
    return lines
