"""End to end through the pinned LiteLLM and the callback, no Ansible.

Claude Code (or curl-like requests shaped like it) -> LiteLLM 1.74 with the
role's config and callback -> the fake Cerebras in strict mode.  What reached
the upstream is read back from the fake's request log.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers.claude import run_claude_p, stream_json_events
from helpers.http import AnthropicResult, assemble_stream, from_message, messages, sse_events
from helpers.stack import (
    EMPTY_CONTENT_ALIAS,
    MODEL_ALIAS,
    UNSERVED_MODEL_ALIAS,
    ProxyStack,
    anthropic_body,
)

pytestmark = pytest.mark.integration

MARKER = "ccq-subagent-probe"
AGENT_TOOL = {
    "name": "Agent",
    "description": "Launch a new agent to handle complex, multi-step tasks.",
    "input_schema": {
        "type": "object",
        "properties": {
            "description": {"type": "string"},
            "prompt": {"type": "string"},
            "subagent_type": {"type": "string"},
        },
        "required": ["description", "prompt"],
    },
}
EXPECTED_AGENT_INPUT = {
    "description": "ccq subagent probe",
    "prompt": f"{MARKER}: reply with the single word pong",
    "subagent_type": "general-purpose",
}


def ask(stack: ProxyStack, body: dict[str, Any], token: str | None = "",
        timeout: float = 60.0) -> tuple[int, AnthropicResult, bytes]:
    """Send /v1/messages; return status, the assembled result and the raw body."""
    resp = messages(stack.url, body, stack.token if token == "" else token, timeout)
    if resp.status != 200:
        return resp.status, AnthropicResult(None, [], []), resp.body
    if body.get("stream"):
        return resp.status, assemble_stream(resp.body), resp.body
    return resp.status, from_message(resp.json()), resp.body


def first_turn(stream: bool, model: str = MODEL_ALIAS) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 1024,
        "stream": stream,
        "system": [{"type": "text", "text": "You are a helpful assistant."}],
        "tools": [AGENT_TOOL],
        "messages": [{"role": "user", "content": "Use the Agent tool once."}],
    }


# ---------------------------------------------------------------- the blog recipe's checks
def test_a_system_array_returns_anthropic_json(proxy_stack: ProxyStack) -> None:
    """Section 9-1 of the blog recipe (docs/provisioning.md): system as an array -> 200, Anthropic JSON."""
    mark = proxy_stack.fake.mark()
    resp = messages(proxy_stack.url, {
        "model": MODEL_ALIAS, "max_tokens": 16,
        "system": [{"type": "text", "text": "You are a helpful assistant."}],
        "messages": [{"role": "user", "content": "ping"}],
    }, proxy_stack.token)
    assert resp.status == 200, resp.body
    body = resp.json()
    assert body["type"] == "message"
    assert body["role"] == "assistant"
    assert body["content"][0] == {"type": "text", "text": "ccq-fake: done"}
    upstream = proxy_stack.fake.records_since(mark)
    assert [r["status"] for r in upstream] == [200]
    sent = upstream[0]["body"]["messages"]
    assert sent[0] == {"role": "system", "content": "You are a helpful assistant."}


@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_tool_use_round_trip_reaches_upstream_as_tool_message(proxy_stack: ProxyStack,
                                                              stream: bool) -> None:
    """tool_use out, tool_result back as a `tool` message with the same id, text last."""
    mark = proxy_stack.fake.mark()
    status, first, raw = ask(proxy_stack, first_turn(stream))
    assert status == 200, raw
    assert first.stop_reason == "tool_use"
    assert len(first.tool_uses) == 1
    tool_use = first.tool_uses[0]
    assert tool_use["name"] == "Agent"
    assert tool_use["input"] == EXPECTED_AGENT_INPUT

    follow_up = first_turn(stream)
    follow_up["messages"] += [
        {"role": "assistant", "content": [tool_use]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use["id"],
                                      "content": "pong"}]},
    ]
    status, final, raw = ask(proxy_stack, follow_up)
    assert status == 200, raw
    assert final.stop_reason == "end_turn"
    assert final.text == "pong"  # the fake's answer once the marker is in the conversation

    upstream = proxy_stack.fake.records_since(mark)
    assert [r["status"] for r in upstream] == [200, 200]
    sent = upstream[1]["body"]["messages"]
    assistant = next(m for m in sent if m["role"] == "assistant")
    tool_msgs = [m for m in sent if m["role"] == "tool"]
    assert [c["id"] for c in assistant["tool_calls"]] == [tool_use["id"]]
    assert [m["tool_call_id"] for m in tool_msgs] == [tool_use["id"]]
    assert tool_msgs[0]["content"] == "pong"


@pytest.mark.parametrize("token", [None, "sk-wrong-key"], ids=["no_bearer", "wrong_bearer"])
def test_bad_bearer_gets_401_and_nothing_reaches_upstream(proxy_stack: ProxyStack,
                                                          token: str | None) -> None:
    mark = proxy_stack.fake.mark()
    status, _, raw = ask(proxy_stack, first_turn(False), token=token)
    assert proxy_stack.fake.records_since(mark) == []
    # LiteLLM 1.74 without a database answers a wrong key with
    # 400 "No connected db." instead of 401 (observed); ccq must turn it into 401.
    assert status == 401, raw


# ---------------------------------------------------------------- captured Claude Code requests
@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_captured_claude_code_request_passes_strict_upstream(proxy_stack: ProxyStack,
                                                             claude_code_request: Path,
                                                             stream: bool) -> None:
    """Every request Claude Code sent in the capture comes out as one a strict server takes."""
    mark = proxy_stack.fake.mark()
    status, result, raw = ask(proxy_stack, anthropic_body(claude_code_request, stream), timeout=120)
    upstream = proxy_stack.fake.records_since(mark)
    upstream_errors = [(r["status"], r.get("body") and json.dumps(r["body"])[:300])
                       for r in upstream if r["status"] != 200]
    assert status == 200, f"{raw[:2000]!r}\nupstream rejections: {upstream_errors}"
    assert upstream and upstream[-1]["status"] == 200
    if stream:
        names = [n for n, _ in sse_events(raw)]
        assert names[0] == "message_start" and names[-1] == "message_stop", names
        assert "error" not in names
    assert result.stop_reason in ("end_turn", "tool_use")


# ---------------------------------------------------------------- streamed tool-call shapes
@pytest.mark.parametrize("alias", [MODEL_ALIAS, EMPTY_CONTENT_ALIAS],
                         ids=["content_null", "content_empty_string"])
def test_streamed_tool_call_input_arrives_complete(proxy_stack: ProxyStack, alias: str) -> None:
    """LiteLLM 1.74 drops streamed tool-call arguments when a chunk carries
    content "" beside the tool-call delta (fixed upstream only in 1.75.8):
    Claude Code would then run the tool with input {}."""
    upstream = proxy_stack.upstream_for(alias)
    mark = upstream.mark()
    status, result, raw = ask(proxy_stack, first_turn(True, model=alias))
    assert status == 200, raw
    assert upstream.records_since(mark), "the request did not reach the intended upstream"
    assert result.stop_reason == "tool_use"
    assert [t["input"] for t in result.tool_uses] == [EXPECTED_AGENT_INPUT]


def test_non_streamed_tool_call_with_empty_content_keeps_its_input(proxy_stack: ProxyStack) -> None:
    status, result, raw = ask(proxy_stack, first_turn(False, model=EMPTY_CONTENT_ALIAS))
    assert status == 200, raw
    assert [t["input"] for t in result.tool_uses] == [EXPECTED_AGENT_INPUT]


# ---------------------------------------------------------------- upstream errors
def test_upstream_4xx_reaches_the_client_as_a_4xx_not_a_500(proxy_stack: ProxyStack) -> None:
    """Claude Code retries a 5xx for minutes; a 4xx it reports at once.

    The alias points at a model the fake does not serve, so the upstream
    answers 404 model_not_found.
    """
    status, _, raw = ask(proxy_stack, {
        "model": UNSERVED_MODEL_ALIAS, "max_tokens": 16,
        "messages": [{"role": "user", "content": "ping"}]})
    assert 400 <= status < 500, f"status {status}: {raw[:500]!r}"


# ---------------------------------------------------------------- real Claude Code
def test_claude_code_agent_round_trip_through_the_proxy(proxy_stack: ProxyStack,
                                                        claude_code_bin: Path,
                                                        tmp_path: Path) -> None:
    """`claude -p` on the pinned version: the fake scripts an Agent call; the
    subagent's conversation reaches the upstream, its result comes back as a
    tool result, and Claude Code exits 0."""
    mark = proxy_stack.fake.mark()
    proc = run_claude_p(claude_code_bin, tmp_path / "home", tmp_path / "project",
                        proxy_stack.url, proxy_stack.token,
                        "Use the Agent tool once, then say done.", timeout=240)
    upstream = proxy_stack.fake.records_since(mark)
    summary = [(r["status"], len(r["body"].get("messages", [])) if isinstance(r["body"], dict) else None)
               for r in upstream]
    assert proc.returncode == 0, (f"exit {proc.returncode}; upstream {summary}\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    bodies = [r["body"] for r in upstream if r["status"] == 200]

    def user_text(body: dict[str, Any]) -> str:
        return json.dumps([m for m in body["messages"] if m["role"] == "user"])

    agent_calls = [c for b in bodies for m in b["messages"] if m["role"] == "assistant"
                   for c in m.get("tool_calls") or [] if c["function"]["name"] in ("Agent", "Task")]
    subagent = [b for b in bodies if MARKER in user_text(b) and not any(
        m.get("tool_calls") for m in b["messages"] if m["role"] == "assistant")]
    answered = [m for b in bodies for m in b["messages"]
                if m["role"] == "tool" and m["tool_call_id"] in {c["id"] for c in agent_calls}]
    assert agent_calls, f"no Agent call reached the upstream: {summary}"
    assert subagent, "the subagent's own conversation never reached the upstream"
    assert answered, "the Agent's tool result never came back to the upstream"
    events = stream_json_events(proc.stdout)
    assert events and events[-1].get("type") == "result"
    assert events[-1].get("is_error") is False


# ---------------------------------------------------------------- count_tokens
def count_tokens(stack: ProxyStack, body: dict[str, Any], token: str | None = "") -> Any:
    from helpers.http import ANTHROPIC_HEADERS, request

    headers = dict(ANTHROPIC_HEADERS)
    if token is not None:
        headers["authorization"] = f"Bearer {stack.token if token == '' else token}"
    return request("POST", stack.url + "/v1/messages/count_tokens", body, headers)


def test_count_tokens_answers_for_every_captured_claude_code_request(proxy_stack: ProxyStack,
                                                                     claude_code_requests: list[Path]) -> None:
    """Claude Code's own bodies (78 KB of system prompt and tools for the main agent) are counted
    offline, after ccq's normalization, and the count grows with the conversation."""
    counts = {}
    for path in claude_code_requests:
        resp = count_tokens(proxy_stack, anthropic_body(path, False))
        assert resp.status == 200, (path.name, resp.body[:500])
        assert set(resp.json()) == {"input_tokens"}
        counts[path.stem] = resp.json()["input_tokens"]
    # A main-agent request carries ~20k tokens of system prompt and tools; a tool-result turn more.
    # An 80 KB body of English and JSON is some 15-25k tokens, whatever the exact vocabulary.
    size = {path.stem: len(path.read_bytes()) for path in claude_code_requests}
    assert all(size[name] / 6 < n < size[name] / 2.5 for name, n in counts.items()), (counts, size)
    assert counts["full_main_bash_tool_result"] > counts["full_subagent"]


def test_count_tokens_counts_added_text_at_about_one_token_per_word(proxy_stack: ProxyStack) -> None:
    base = {"model": MODEL_ALIAS, "messages": [{"role": "user", "content": "hello"}]}
    words = " ".join(["cerebras"] * 100 + ["proxy"] * 100 + ["window"] * 100)
    longer = {"model": MODEL_ALIAS, "messages": [{"role": "user", "content": "hello " + words}]}
    small, large = (count_tokens(proxy_stack, b).json()["input_tokens"] for b in (base, longer))
    assert 0 < small < 20
    assert 250 <= large - small <= 700, (small, large)


def test_count_tokens_needs_the_proxy_key_and_a_body(proxy_stack: ProxyStack) -> None:
    mark = proxy_stack.fake.mark()
    body = {"model": MODEL_ALIAS, "messages": [{"role": "user", "content": "hi"}]}
    assert count_tokens(proxy_stack, body, token="sk-wrong").status == 401
    bad = count_tokens(proxy_stack, {"model": MODEL_ALIAS})
    assert bad.status == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    assert proxy_stack.fake.records_since(mark) == [], "counting must not call the upstream"
