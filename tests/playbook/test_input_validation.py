"""Bad input stops site.yml before any change, with one line that says what to do.

The play runs against this machine with connection local and --check, so even a validation
that wrongly passed would change nothing here. (A missing key is proven on the Molecule
target, where another account without a key file exists: molecule/default/tests.)
"""

from __future__ import annotations

import subprocess

import pytest

from helpers.playbook import play_output, run_playbook


def assert_stopped_in_validation(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode != 0, result.stdout[-3000:]
    # Nothing but the ccq role ran: no task of a role that changes the machine.
    for role in ("extra_ca_certs :", "claude_code :", "ccq_shell :", "litellm_proxy :", "litellm_service :"):
        assert role not in result.stdout, f"{role} ran after a failed validation"
    assert "changed=0" in result.stdout


# (what the user passed, the Cerebras key in the environment, the line the play must print)
BAD_INPUT = {
    "key with whitespace": ([], "csk-abc def", "contains whitespace or quote characters"),
    "port not a number": (["-e", "ccq_proxy_port=abc"], "csk-test", "ccq_proxy_port"),
    "port below 1024": (["-e", "ccq_proxy_port=80"], "csk-test", "Invalid setting: ccq_proxy_port must be 1024-65535"),
    "port above 65535": (["-e", "ccq_proxy_port=70000"], "csk-test",
                         "Invalid setting: ccq_proxy_port must be 1024-65535"),
    "blank model alias": (["-e", "ccq_model_alias=' '"], "csk-test", "ccq_model_alias must be non-empty"),
    "blank preferred model": (["-e", '{"ccq_cerebras_model_preference": ["zai-glm-4.7", " "]}'], "csk-test",
                              "ccq_cerebras_model_preference must list at least one model id, none of them empty"),
    "plain http to a remote host": (["-e", "ccq_cerebras_api_base=http://api.example.com/v1"], "csk-test",
                                    "ccq_cerebras_api_base must be https://"),
    "unknown permission mode": (["-e", "ccq_permission_mode=yolo"], "csk-test",
                                "value of ccq_permission_mode must be one of: "
                                "auto, manual, acceptEdits, plan, dontAsk"),
    "unknown account": (["-e", "ccq_user=ccq-no-such-user"], "csk-test", "User 'ccq-no-such-user' does not exist"),
    "unsupported OS": (["-e", '{"ccq_supported_os_families": ["Darwin"]}'], "csk-test", "ccq supports Darwin"),
}


@pytest.mark.parametrize(("extra", "key", "message"), BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_stops_before_any_change_with_one_line(extra, key, message):
    result = run_playbook("--check", *extra, inventory="inventories/local/hosts.yml",
                          env={"CEREBRAS_API_KEY": key}, timeout=300)
    assert_stopped_in_validation(result)
    assert message in play_output(result), result.stdout[-3000:]


def test_a_pinned_model_cerebras_does_not_serve_stops_before_any_change(make_fake):
    upstream = make_fake("--models", "gpt-oss-120b,zai-glm-4.7")
    result = run_playbook("--check", "-e", f"ccq_cerebras_api_base={upstream.api_base}",
                          "-e", "ccq_cerebras_model=qwen-3-coder-480b", inventory="inventories/local/hosts.yml",
                          env={"CEREBRAS_API_KEY": upstream.api_key}, timeout=300)
    assert_stopped_in_validation(result)
    # The blog recipe's model: the model table says when Cerebras retired it and what replaces it.
    assert ("ccq_cerebras_model=qwen-3-coder-480b is not served by " + upstream.api_base
            + " (Cerebras retired it in 2025-11; its replacement is gpt-oss-120b)."
            + " It serves: gpt-oss-120b, zai-glm-4.7.") in play_output(result), result.stdout[-3000:]


def test_your_settings_file_is_read_by_every_run_and_minus_e_still_wins(tmp_path):
    """config.yml (ccq_settings_file) keeps a user's choices between runs; -e is a one-off."""
    settings = tmp_path / "config.yml"
    settings.write_text("ccq_proxy_port: 80\nccq_user: ccq-no-such-user\n")
    result = run_playbook("--check", "-e", f"ccq_settings_file={settings}", inventory="inventories/local/hosts.yml",
                          env={"CEREBRAS_API_KEY": "csk-test"}, timeout=300)
    assert_stopped_in_validation(result)
    assert "User 'ccq-no-such-user' does not exist" in play_output(result)
    # -e wins over the file: the account is found, and then the file's port stops the play.
    result = run_playbook("--check", "-e", f"ccq_settings_file={settings}", "-e", "ccq_user=''",
                          inventory="inventories/local/hosts.yml", env={"CEREBRAS_API_KEY": "csk-test"}, timeout=300)
    assert_stopped_in_validation(result)
    assert "Invalid setting: ccq_proxy_port must be 1024-65535 (got 80)" in play_output(result)
