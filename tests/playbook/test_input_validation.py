"""Bad input stops site.yml before any change, with one line that says what to do.

The play runs against this machine with connection local and --check, so even a validation
that wrongly passed would change nothing here. (A missing key is proven on the Molecule
target, where another account without a key file exists: molecule/default/tests.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


def run_site(*extra: str, env_overrides: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CEREBRAS_API_KEY"}
    env["ANSIBLE_NOCOLOR"] = "1"
    env.update(env_overrides or {})
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "site.yml", "-i", "inventories/local/hosts.yml", "--check", *extra],
        cwd=REPO, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
    )


def failure_lines(result: subprocess.CompletedProcess[str]) -> str:
    return "\n".join(line for line in result.stdout.splitlines() if "msg" in line or "FAILED" in line)


def assert_stopped_in_validation(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode != 0, result.stdout[-3000:]
    # Nothing but the ccq role ran: no task of a role that changes the machine.
    for role in ("extra_ca_certs :", "claude_code :", "ccq_shell :", "litellm_proxy :", "litellm_service :"):
        assert role not in result.stdout, f"{role} ran after a failed validation"
    assert "changed=0" in result.stdout


def test_key_with_whitespace_is_rejected():
    result = run_site(env_overrides={"CEREBRAS_API_KEY": "csk-abc def"})
    assert_stopped_in_validation(result)
    assert "contains whitespace or quote characters" in result.stdout


def test_port_that_is_not_a_number_is_rejected_by_the_argument_spec():
    result = run_site("-e", "ccq_proxy_port=abc", env_overrides={"CEREBRAS_API_KEY": "csk-test"})
    assert_stopped_in_validation(result)
    assert "ccq_proxy_port" in result.stdout and "int" in result.stdout


@pytest.mark.parametrize("setting", ["ccq_proxy_port=80", "ccq_proxy_port=70000", "ccq_model_alias=' '"])
def test_out_of_range_settings_are_rejected(setting):
    result = run_site("-e", setting, env_overrides={"CEREBRAS_API_KEY": "csk-test"})
    assert_stopped_in_validation(result)
    assert "Invalid setting: ccq_proxy_port must be 1024-65535" in result.stdout


def test_plain_http_to_a_remote_host_is_rejected():
    result = run_site("-e", "ccq_cerebras_api_base=http://api.example.com/v1",
                      env_overrides={"CEREBRAS_API_KEY": "csk-test"})
    assert_stopped_in_validation(result)
    assert "ccq_cerebras_api_base must be https://" in result.stdout


def test_unknown_account_is_named():
    result = run_site("-e", "ccq_user=ccq-no-such-user", env_overrides={"CEREBRAS_API_KEY": "csk-test"})
    assert_stopped_in_validation(result)
    assert "User 'ccq-no-such-user' does not exist" in result.stdout


def test_unsupported_os_is_one_clear_line():
    result = run_site("-e", '{"ccq_supported_os_families": ["Darwin"]}',
                      env_overrides={"CEREBRAS_API_KEY": "csk-test"})
    assert_stopped_in_validation(result)
    assert "ccq supports Darwin" in result.stdout
