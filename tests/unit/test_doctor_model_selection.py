"""roles/ccq/tasks/select_model.yml: which Cerebras model the proxy is given.

Each case runs the task file with ansible-playbook (connection local; it only reads) against
the fake upstream serving a chosen model list, or against a closed port for "offline".
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers.stack import free_port

REPO = Path(__file__).resolve().parents[2]
TASKS = REPO / "roles/ccq/tasks/select_model.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
PREFERENCE = ["qwen-3-coder-480b", "zai-glm-4.7", "gpt-oss-120b"]

pytestmark = pytest.mark.skipif(not ANSIBLE_PLAYBOOK.exists(), reason="ansible-playbook is not in this venv")


def select(tmp_path: Path, api_base: str, key: str, model: str = "", preference: list[str] | None = None,
           *extra: str) -> subprocess.CompletedProcess[str]:
    """Run select_model.yml; the chosen model is printed as SELECTED=<model>."""
    playbook = tmp_path / "select.yml"
    playbook.write_text(f"""
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.include_tasks: {TASKS}
    - ansible.builtin.debug:
        msg: "SELECTED={{{{ ccq_cerebras_model_selected }}}}"
""")
    variables = {"ccq_cerebras_api_base": api_base, "ccq_cerebras_model": model,
                 "ccq_cerebras_model_preference": PREFERENCE if preference is None else preference}
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "CEREBRAS_"))}
    # The key as Ansible gets it from resolve_keys.yml: a variable, never argv.
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="default", CCQ_TEST_KEY=key)
    (tmp_path / "key.yml").write_text("ccq_resolved_cerebras_api_key: \"{{ lookup('ansible.builtin.env', 'CCQ_TEST_KEY') }}\"\n")
    return subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}",
         "-e", f"@{tmp_path / 'vars.json'}", "-e", f"@{tmp_path / 'key.yml'}", str(playbook), *extra],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def selected(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return re.search(r"SELECTED=([^\s\"]+)", result.stdout).group(1)


@pytest.fixture
def served(make_fake: Any) -> Any:
    """A fake Cerebras that no longer serves the seed's model."""
    return make_fake("--models", "gpt-oss-120b,zai-glm-4.7,llama3.1-8b")


def test_first_preferred_model_that_is_served_is_chosen_and_reported(tmp_path, served):
    result = select(tmp_path, served.api_base, served.api_key)
    assert selected(result) == "zai-glm-4.7"
    assert "Cerebras model: zai-glm-4.7 (the first of ccq_cerebras_model_preference" in result.stdout


def test_a_pinned_model_that_is_served_is_kept(tmp_path, served):
    assert selected(select(tmp_path, served.api_base, served.api_key, model="gpt-oss-120b")) == "gpt-oss-120b"


def test_a_pinned_model_that_is_not_served_stops_and_lists_what_is(tmp_path, served):
    result = select(tmp_path, served.api_base, served.api_key, model="qwen-3-coder-480b")
    assert result.returncode != 0
    assert "ccq_cerebras_model=qwen-3-coder-480b is not served" in result.stdout
    assert "gpt-oss-120b, zai-glm-4.7, llama3.1-8b" in result.stdout
    assert "SELECTED=" not in result.stdout


def test_no_served_preference_stops_and_lists_what_is_served(tmp_path, served):
    result = select(tmp_path, served.api_base, served.api_key, "", ["qwen-3-coder-480b", "some-other-model"])
    assert result.returncode != 0
    assert "None of ccq_cerebras_model_preference" in result.stdout and "llama3.1-8b" in result.stdout


@pytest.mark.parametrize("pin, expected", [("", "qwen-3-coder-480b"), ("gpt-oss-120b", "gpt-oss-120b")])
def test_offline_uses_the_pin_or_the_first_preference_with_a_warning(tmp_path, pin, expected):
    closed = f"http://127.0.0.1:{free_port()}/v1"
    result = select(tmp_path, closed, "csk-offline-" + "0" * 12, model=pin)
    assert selected(result) == expected
    assert "WARNING: could not list the models" in result.stdout


def test_a_refused_key_counts_as_offline_and_says_so(tmp_path, served):
    result = select(tmp_path, served.api_base, "csk-wrong-" + "0" * 12)
    assert selected(result) == "qwen-3-coder-480b"
    assert "HTTP 401 (the key was refused)" in result.stdout


def test_an_empty_preference_list_is_rejected(tmp_path, served):
    result = select(tmp_path, served.api_base, served.api_key, "", [])
    assert result.returncode != 0 and "ccq_cerebras_model_preference must list" in result.stdout


def test_the_key_never_reaches_the_output_even_at_vvv(tmp_path, served):
    result = select(tmp_path, served.api_base, served.api_key, "", None, "-vvv")
    assert selected(result) == "zai-glm-4.7"
    assert served.api_key not in result.stdout + result.stderr
