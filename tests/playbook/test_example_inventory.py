"""inventories/example is what a team copies: it must parse, its vault must open, and every
setting in it must be one the play knows (a misspelt variable would be silently ignored)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from helpers.playbook import REPO

EXAMPLE = REPO / "inventories/example"
# The example vault's test password (molecule/fleet converges with the same group_vars).
VAULT_PASSWORD_FILE = REPO / "molecule/fleet/vault-password"
# Connection settings Ansible itself reads, not ccq's.
ANSIBLE_SETTINGS = {"ansible_host", "ansible_user"}


def inventory() -> dict:
    command = Path(sys.executable).with_name("ansible-inventory")
    out = subprocess.run([str(command), "-i", str(EXAMPLE), "--list", "--vault-password-file",
                          str(VAULT_PASSWORD_FILE)], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def known_settings() -> set[str]:
    specs = yaml.safe_load((REPO / "roles/ccq/meta/argument_specs.yml").read_text())
    return set(specs["argument_specs"]["main"]["options"])


def test_every_laptop_has_an_account_and_the_team_key_from_the_vault():
    listed = inventory()
    hostvars = listed["_meta"]["hostvars"]
    assert set(hostvars) == {"alice-laptop", "carol-laptop"}
    assert {v["ccq_user"] for v in hostvars.values()} == {"alice", "carol"}
    # One laptop shows a per-host difference from the defaults.
    assert hostvars["carol-laptop"]["ccq_proxy_port"] != hostvars["alice-laptop"].get("ccq_proxy_port")
    for host in hostvars.values():
        # The key is a reference to the vaulted value, never the key itself in plain text.
        assert host["ccq_cerebras_api_key"] == "{{ vault_ccq_cerebras_api_key }}"
        assert host["vault_ccq_cerebras_api_key"]["__ansible_vault"].startswith("$ANSIBLE_VAULT;")


def test_every_setting_in_the_example_is_one_the_play_reads():
    files = [p for p in EXAMPLE.rglob("*.yml") if p.name != "hosts.yml" and p.name != "vault.yml"]
    assert files
    known = known_settings()
    for path in files:
        for name in yaml.safe_load(path.read_text()) or {}:
            assert name in known or name in ANSIBLE_SETTINGS, f"{path.relative_to(REPO)}: {name} is not a ccq setting"
    # The commented-out settings are spelled right too.
    for path in files:
        for line in path.read_text().splitlines():
            if line.startswith("# ccq_"):
                assert line[2:].split(":")[0] in known, f"{path.relative_to(REPO)}: {line}"


def test_the_example_vault_holds_only_the_vaulted_key():
    text = (EXAMPLE / "group_vars/all/vault.yml").read_text()
    assert "csk-" not in text
    assert list(yaml.safe_load(text.replace("!vault", ""))) == ["vault_ccq_cerebras_api_key"]
