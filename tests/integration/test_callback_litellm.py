"""The callback against a real LiteLLM 1.74.0.post2 (items a, f, i, j, k).

These run litellm_harness.py in the pinned LiteLLM venv: CCQ_LITELLM_PYTHON
when set, else the suite's cached venv (tests/conftest.py ``litellm_venv``,
built under .cache/ on first use).  Marked ``integration`` because building
that venv needs PyPI; they start no proxy and take a few seconds each.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from helpers.callback_support import (
    cerebras_policy,
    claude_code_payloads,
    claude_code_request,
    openai_rule_violations,
    text,
    tool_result,
    tool_use,
)
from helpers.modules import NO_BYTECODE_ENV, TESTS_DIR

pytestmark = pytest.mark.integration
HARNESS = Path(__file__).resolve().parent / "litellm_harness.py"


def harness(python: str, jobs: list[list[Any]], *, patches: bool) -> dict[str, Any]:
    """Run a batch of harness scenarios in one process of the LiteLLM venv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CEREBRAS_", "LITELLM_", "ANTHROPIC_"))}
    env.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "CCQ_LITELLM_PATCHES": "1" if patches else "0",
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", "PYTHONPATH": str(TESTS_DIR),
                **NO_BYTECODE_ENV})
    proc = subprocess.run([python, str(HARNESS), "batch"], input=json.dumps(jobs), capture_output=True,
                          text=True, timeout=300, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("CCQ-RESULT ")]
    assert proc.returncode == 0 and lines, f"harness failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len("CCQ-RESULT "):])


MIXED_TURN = {
    "model": "qwen-3-coder-480b", "max_tokens": 100,
    "system": [text("sys")],
    "messages": [
        {"role": "user", "content": "go"},
        {"role": "system", "content": "env"},
        {"role": "assistant", "content": [tool_use("t1", "Agent"), tool_use("t2", "Bash")]},
        {"role": "user", "content": [text("note"), tool_result("t1", [text("a"), text("b")]), tool_result("t2", "")]},
    ],
}
HOOK_CALL_TYPES = ["text_completion", "anthropic_messages", "completion", "acompletion"]


@pytest.fixture(scope="module")
def patched(litellm_python: str) -> dict[str, Any]:
    """Every scenario, with the callback loaded as the proxy loads it."""
    return harness(litellm_python, [
        ["policy", "policy", None],
        ["adapter", "adapter", {**claude_code_payloads(), "mixed-turn": MIXED_TURN, "cc": claude_code_request()}],
        ["stream-null", "stream", {"content_shape": "null", "concurrency": 1}],
        ["stream-empty", "stream", {"content_shape": "empty", "concurrency": 1}],
        ["stream-concurrent", "stream", {"content_shape": "null", "concurrency": 6}],
        ["error", "error", None],
        ["hook", "hook", {"payload": claude_code_request(), "call_types": HOOK_CALL_TYPES}],
    ], patches=True)


@pytest.fixture(scope="module")
def unpatched(litellm_python: str) -> dict[str, Any]:
    """The response-side scenarios with CCQ_LITELLM_PATCHES=0 (plain LiteLLM 1.74)."""
    return harness(litellm_python, [
        ["stream-empty", "stream", {"content_shape": "empty", "concurrency": 1}],
        ["stream-concurrent", "stream", {"content_shape": "null", "concurrency": 6}],
        ["error", "error", None],
    ], patches=False)


# ---------------------------------------------------------------- a. the policy
def test_policy_is_derived_from_litellms_cerebras_config(patched):
    result = patched["policy"]
    assert result["litellm_version"] == "1.74.0.post2"
    assert result["supported"] == result["cerebras_supported"]
    assert "thinking" in result["checked"] and "thinking" not in result["supported"]
    assert result["instance_policy_equal"] is True


def test_plain_python_tests_use_the_policy_litellm_derives(patched):
    result = patched["policy"]
    stand_in = cerebras_policy()
    assert sorted(stand_in.supported) == result["supported"]
    assert sorted(stand_in.checked) == result["checked"]
    assert set(stand_in.internal) <= set(result["internal"])


# ---------------------------------------------------------------- f. the adapter's output


def test_adapter_output_answers_every_tool_call_directly(patched):
    for name, outcome in patched["adapter"].items():
        translated = outcome["normalized"]
        assert "error" not in translated, (name, translated)
        assert openai_rule_violations(translated["messages"]) == [], name


def test_unnormalized_mixed_turn_breaks_openai_rules_in_litellm_1_74(patched):
    # Proves the check above can fail: LiteLLM 1.74 alone puts the text
    # first and emits one tool message per text block (duplicate ids).
    raw = patched["adapter"]["mixed-turn"]["raw"]
    problems = openai_rule_violations(raw["messages"])
    assert any("before tool results" in p for p in problems)
    assert any("answers no pending call" in p for p in problems)


def test_adapter_keeps_folded_system_first_and_as_one_string(patched):
    translated = patched["adapter"]["mixed-turn"]["normalized"]
    assert translated["messages"][0] == {"role": "system", "content": "sys\n\nenv"}
    assert [m["role"] for m in translated["messages"]] == ["system", "user", "assistant", "tool", "tool", "user"]
    assert [m["content"] for m in translated["messages"][3:5]] == ["a\nb", "(no output)"]


def test_adapter_gets_tools_without_foreign_keys_in_their_schema(patched):
    translated = patched["adapter"]["cc"]["normalized"]
    for tool in translated["tools"]:
        assert not {"cache_control", "defer_loading", "max_uses"} & set(tool["function"]["parameters"])
    assert "web_search" not in [t["function"]["name"] for t in translated["tools"]]
    assert not {"thinking", "context_management", "output_config", "top_k"} & set(translated["keys"])


# ---------------------------------------------------------------- i. LiteLLM calls the hook
def test_litellm_proxy_runs_the_hook_only_for_anthropic_messages(patched):
    result = patched["hook"]
    for call_type in ("text_completion", "anthropic_messages"):
        assert "thinking" not in result[call_type] and isinstance(result[call_type]["system"], str)
    for call_type in ("completion", "acompletion"):
        assert result[call_type] == claude_code_request()


# ---------------------------------------------------------------- j. streamed tool calls
def _tool_inputs(events: list[dict[str, Any]]) -> list[Any]:
    """The tool_use inputs a client assembles from one Anthropic SSE stream."""
    blocks: dict[int, dict[str, Any]] = {}
    for event in events:
        if event["type"] == "content_block_start":
            blocks[event["index"]] = {"block": event["content_block"], "json": ""}
        elif event["type"] == "content_block_delta" and event["delta"]["type"] == "input_json_delta":
            if event["index"] not in blocks:
                return ["delta before its content_block_start"]
            blocks[event["index"]]["json"] += event["delta"]["partial_json"]
    inputs = []
    for entry in blocks.values():
        if entry["block"]["type"] == "tool_use":
            try:
                inputs.append(json.loads(entry["json"]) if entry["json"] else {})
            except ValueError:
                inputs.append(f"unparseable: {entry['json']!r}")
    return inputs


@pytest.mark.parametrize("shape", ["null", "empty"])
def test_streamed_tool_arguments_arrive_whole_for_both_content_shapes(patched, shape):
    result = patched[f"stream-{shape}"]
    assert [_tool_inputs(s) for s in result["streams"]] == [[result["expected_input"]]]


def test_unpatched_litellm_drops_streamed_arguments_beside_empty_content(unpatched):
    # The bug the patch fixes, so this suite notices if the patch stops mattering.
    result = unpatched["stream-empty"]
    assert [_tool_inputs(s) for s in result["streams"]] == [[{}]]


def test_concurrent_streams_each_get_their_own_events(patched):
    result = patched["stream-concurrent"]
    expected = result["expected_input"]
    assert [_tool_inputs(s) for s in result["streams"]] == [[expected]] * 6
    for stream in result["streams"]:
        assert [e["type"] for e in stream].count("message_start") == 1
        assert stream[-1]["type"] == "message_stop"


def test_unpatched_litellm_mixes_up_concurrent_streams(unpatched):
    result = unpatched["stream-concurrent"]
    expected = result["expected_input"]
    assert [_tool_inputs(s) for s in result["streams"]] != [[expected]] * 6


# ---------------------------------------------------------------- k. upstream 4xx
def test_upstream_400_keeps_its_status_through_the_adapter(patched):
    result = patched["error"]
    for stream in ("False", "True"):
        assert result[stream]["status_code"] == 400, result
        assert result[stream]["type"] == "invalid_request_error"


def test_unpatched_adapter_hides_the_upstream_status(unpatched):
    result = unpatched["error"]
    assert result["False"] == {"raised": "ValueError", "status_code": None, "type": None}

