"""roles/ccq/tasks/select_model.yml: which Cerebras model the proxy is given.

Each case runs the task file with ansible-playbook (connection local; it only reads) against
the fake upstream serving a chosen model list, or against a closed port for "offline".
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers.playbook import run_select_model, select_model_facts
from helpers.stack import free_port

ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
PREFERENCE = ["qwen-3-coder-480b", "zai-glm-4.7", "gpt-oss-120b"]

pytestmark = pytest.mark.skipif(not ANSIBLE_PLAYBOOK.exists(), reason="ansible-playbook is not in this venv")


def select(tmp_path: Path, api_base: str, key: str, model: str = "", preference: list[str] | None = None,
           *extra: str, settings: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
    """select_model.yml against ``api_base`` with a pin and a preference list."""
    variables = {"ccq_cerebras_api_base": api_base, "ccq_cerebras_model": model,
                 "ccq_cerebras_model_preference": PREFERENCE if preference is None else preference,
                 **(settings or {})}
    return run_select_model(tmp_path, variables, key, *extra)


def selected(result: subprocess.CompletedProcess[str]) -> str:
    return select_model_facts(result)["selected"]


@pytest.fixture
def served(make_fake: Any) -> Any:
    """A fake Cerebras that no longer serves the model of the Japanese blog recipe ccq started from."""
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
    assert "FACTS=" not in result.stdout


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


def claude_code_environment(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    return select_model_facts(result)["env"]


# The budget of docs/budget.md: the answer's cap at most window/8; the tool cap the largest
# that lets two maximal reads after a compaction fit the window and the free tier's quota.
@pytest.mark.parametrize("settings, window, output, tool", [
    ({}, 65536, 8192, 3232),
    ({"ccq_cerebras_tier": "paid"}, 131072, 16384, 6000),
    # A window above the free tier's 60,000-token quota leaves no room: the floor.
    ({"ccq_context_window": 100000}, 100000, 8192, 1024),
    ({"ccq_cerebras_tier": "paid", "ccq_max_output_tokens": 8000}, 131072, 8000, 6000),
    ({"ccq_max_output_tokens": 64000}, 65536, 16384, 3232),  # never above the proxy's clamp
    ({"ccq_max_tokens_ceiling": 4096}, 65536, 4096, 3232),
])
def test_claude_code_is_told_the_models_window_and_output_limit(tmp_path, served, settings, window, output, tool):
    env = claude_code_environment(select(tmp_path, served.api_base, served.api_key, model="gpt-oss-120b",
                                         settings=settings))
    assert env == {
        "CLAUDE_CODE_MAX_CONTEXT_TOKENS": str(window), "CLAUDE_CODE_MAX_OUTPUT_TOKENS": str(output),
        "CLAUDE_CODE_FILE_READ_MAX_OUTPUT_TOKENS": str(tool), "MAX_MCP_OUTPUT_TOKENS": str(tool),
        "BASH_MAX_OUTPUT_LENGTH": str(tool * 3),
        "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_AUTO_MODE_SERVER": "0", "CLAUDE_CODE_AUTO_MODE_MODEL": "cerebras",
        "CLAUDE_CODE_RESUME_HINT_COMMAND": "ccq"}


def test_a_model_the_table_does_not_list_gets_the_smallest_window_and_a_warning(tmp_path, served):
    result = select(tmp_path, served.api_base, served.api_key, model="llama3.1-8b",
                    settings={"ccq_cerebras_tier": "paid"})
    assert selected(result) == "llama3.1-8b"
    assert claude_code_environment(result)["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == "65536"
    assert "llama3.1-8b is not in ccq_cerebras_models" in " ".join(result.stdout.split())
