"""The last lines of a run say which hosts are ready and why each other one is not
(plugins/callback/ccq_summary.py, enabled in ansible.cfg): over a team's inventory the reason a
laptop failed must not scroll away among the others' task lines."""

from __future__ import annotations

import re
from pathlib import Path

from helpers.playbook import run_playbook

PLAYBOOK = """
- hosts: all
  gather_facts: false
  vars_files: [secret.yml]
  tasks:
    - name: A step whose failure the play expects
      ansible.builtin.command: "true"
      failed_when: true
      ignore_errors: true
    - name: A step that fails and is rescued
      block:
        - ansible.builtin.fail:
            msg: taken back
          when: inventory_hostname == 'laptop-ok'
      rescue:
        - ansible.builtin.debug:
            msg: rescued
    - name: The account exists
      ansible.builtin.assert:
        that: inventory_hostname != 'laptop-typo'
        fail_msg: "User 'dave' does not exist on laptop-typo: create it or set ccq_user."
        quiet: true
    - name: The key file is written
      ansible.builtin.command:
        argv: [sh, -c, 'echo "{{ secret_key }}"; exit 3']
      no_log: true
      when: inventory_hostname == 'laptop-secret'
"""

INVENTORY = """
laptop-ok ansible_connection=local
laptop-typo ansible_connection=local
laptop-secret ansible_connection=local
# Nothing listens on port 1: the laptop that is switched off.
laptop-off ansible_host=127.0.0.1 ansible_port=1 ansible_connection=ssh ansible_ssh_common_args='-o ConnectTimeout=5'
"""


def summary(stdout: str) -> dict[str, str]:
    """host -> its summary line (after the 'ready'/'FAILED' word)."""
    block = stdout[stdout.index("host(s) ready"):]
    return {m.group(2): m.group(1) + (m.group(3) or "")
            for m in re.finditer(r"^  (ready|FAILED) +(\S+?)(:.*)?$", block, re.MULTILINE)}


def test_every_host_gets_one_line_ready_or_its_reason(tmp_path: Path):
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "hosts.ini").write_text(INVENTORY)
    # Not in the playbook's text: ansible-core 2.19 quotes a failed task's source lines.
    (tmp_path / "secret.yml").write_text("secret_key: csk-sentinel-summary-0000\n")
    result = run_playbook(playbook=str(tmp_path / "play.yml"), inventory=str(tmp_path / "hosts.ini"))
    assert result.returncode != 0
    assert "ccq: 1 of 4 host(s) ready" in result.stdout, result.stdout[-3000:]
    lines = summary(result.stdout)
    assert set(lines) == {"laptop-ok", "laptop-typo", "laptop-secret", "laptop-off"}
    # The ignored and the rescued failures do not make a host fail.
    assert lines["laptop-ok"] == "ready"
    assert lines["laptop-typo"] == ("FAILED: The account exists: User 'dave' does not exist on laptop-typo: "
                                    "create it or set ccq_user.")
    assert lines["laptop-off"].startswith("FAILED: unreachable at ")
    assert "Connection refused" in lines["laptop-off"] or "timed out" in lines["laptop-off"]
    # A no_log failure is named, its message is not.
    assert lines["laptop-secret"].startswith("FAILED: The key file is written: its output is hidden (no_log")
    assert "csk-sentinel-summary" not in result.stdout + result.stderr
