"""A clean first screen (issue 23): the commands `make provision` runs print no warning before
the play's own lines. ansible-core 2.19 imports cryptography's DSA module for its SSH agent
code in every command, and cryptography 51 warns on that import (requirements-dev.txt pins
the newest cryptography that does not).

site.yml runs here as `make provision` runs it (this machine, inventories/local), stopped in
validation by a bad port so that nothing changes; Python's warnings are what a user sees.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from helpers.playbook import REPO, run_playbook

WARNING = re.compile(r"warning", re.IGNORECASE)


def test_ansible_itself_starts_without_a_warning():
    ansible = Path(sys.executable).with_name("ansible")
    result = subprocess.run([str(ansible) if ansible.exists() else "ansible", "--version"], cwd=REPO,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert not WARNING.search(result.stdout + result.stderr), result.stderr


def test_make_provisions_play_prints_no_warning():
    result = run_playbook("--check", "-e", "ccq_proxy_port=80", inventory="inventories/local/hosts.yml",
                          env={"CEREBRAS_API_KEY": "csk-test"}, timeout=300)
    # It stopped in validation, with its own line, and with nothing else to warn about.
    assert "Invalid setting: ccq_proxy_port must be 1024-65535" in result.stdout + result.stderr, result.stdout[-3000:]
    warnings = [line for line in (result.stdout + result.stderr).splitlines() if WARNING.search(line)]
    assert warnings == [], "\n".join(warnings)
