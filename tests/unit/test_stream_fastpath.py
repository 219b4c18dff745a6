"""The stream fast path's pure parts (item l of ccq_proxy/litellm_patches.py).

ccq_proxy/stream_fastpath.py is imported from the role's files; its grammar
checks need no LiteLLM, so these run in the host venv, feeding the shared
translator (ccq_proxy/anthropic_wire.py, tested in test_anthropic_wire.py).  The
equivalence with LiteLLM's own stream path is proven end to end in
tests/integration/test_stream_fastpath_relay.py and test_relay_contract.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from helpers.callback_support import load_patches
from helpers.modules import PROXY_FILES, load_proxy_module

MODEL = "qwen-3-coder-480b"
ODD_TEXT = ["ä", 'naïve "quoted" ', "back\\slash ", "new\nline ", "tab\t", "emoji 😀 ",
            "\u2028sep", "</s>", "\x00nul", "日本語"]


fp = load_proxy_module("stream_fastpath")
wire = load_proxy_module("anthropic_wire")


# ------------------------------------------------------------ upstream chunk builders
def chunk(delta: dict[str, Any] | None, finish: str | None = None, usage: dict[str, int] | None = None,
          **extra: Any) -> bytes:
    """One OpenAI-compatible chunk payload (the bytes after ``data: ``)."""
    body: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": MODEL,
                            "choices": [] if delta is None else [{"index": 0, "delta": delta,
                                                                  "finish_reason": finish}]}
    if usage is not None:
        body["usage"] = usage
    body.update(extra)
    return json.dumps(body).encode()


USAGE = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}


def tool_delta(index: int, args: str, *, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if call_id:
        call.update(id=call_id, type="function")
        call["function"]["name"] = name
    return call


def text_stream(tokens: list[str]) -> list[bytes]:
    return ([chunk({"role": "assistant"})] + [chunk({"content": t}) for t in tokens]
            + [chunk({}, "stop", USAGE), b"[DONE]"])


def tool_stream(content: str | None, pieces: list[str]) -> list[bytes]:
    """Cerebras' tool-call shape; content null or "" beside every tool delta."""
    frames = [chunk({"role": "assistant", "content": content}),
              chunk({"content": content, "tool_calls": [tool_delta(0, "", call_id="call_1", name="Agent")]})]
    frames += [chunk({"content": content, "tool_calls": [tool_delta(0, p)]}) for p in pieces]
    return frames + [chunk({}, "tool_calls", USAGE), b"[DONE]"]


def translate(payloads: list[bytes]) -> list[dict[str, Any]]:
    """Feed payloads through the translator; the decoded Anthropic events."""
    stream = wire.AnthropicStream(MODEL)
    grammar = fp._Grammar(stream, 100)
    out = stream.take()
    for payload in payloads:
        grammar.feed_data(payload)
        out += stream.take()
    out += stream.finish()
    return [json.loads(ev.split(b"\ndata: ", 1)[1]) for ev in out]


def tool_inputs(events: list[dict[str, Any]]) -> dict[int, Any]:
    parts: dict[int, str] = {}
    for ev in events:
        if ev["type"] == "content_block_delta" and ev["delta"]["type"] == "input_json_delta":
            parts[ev["index"]] = parts.get(ev["index"], "") + ev["delta"]["partial_json"]
    return {i: json.loads(p) for i, p in parts.items()}


def without_ids(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for ev in events:
        if ev["type"] == "message_start":
            ev["message"]["id"] = "<id>"
    return events


# ------------------------------------------------------------ behaviour
def test_text_stream_follows_anthropic_event_order() -> None:
    types = [e["type"] for e in translate(text_stream(["a", "b", "c"]))]
    assert types == ["message_start", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_delta", "content_block_stop", "message_delta", "message_stop"]


def test_text_deltas_carry_the_upstream_text_in_order() -> None:
    events = translate(text_stream(ODD_TEXT))
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert text == "".join(ODD_TEXT)


def test_upstream_usage_reaches_message_delta() -> None:
    delta = [e for e in translate(text_stream(["a", "b", "c"])) if e["type"] == "message_delta"]
    assert delta == [{"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                      "usage": {"input_tokens": 12, "output_tokens": 3}}]


def test_tool_call_arguments_become_the_tool_use_input() -> None:
    events = translate(tool_stream(None, ['{"descr', 'iption": "x", ', '"prompt": "y"}']))
    start = [e for e in events if e["type"] == "content_block_start"]
    assert [s["content_block"] for s in start] == [{"type": "tool_use", "id": "call_1", "name": "Agent", "input": {}}]
    assert tool_inputs(events) == {0: {"description": "x", "prompt": "y"}}
    assert [e["delta"]["stop_reason"] for e in events if e["type"] == "message_delta"] == ["tool_use"]


def test_empty_content_beside_tool_calls_keeps_the_arguments() -> None:
    # Stock 1.74 turned content "" beside a tool delta into text_delta "" and lost the arguments.
    pieces = ['{"description": ', '"x", "prompt"', ': "y"}']
    assert without_ids(translate(tool_stream("", pieces))) == without_ids(translate(tool_stream(None, pieces)))


def test_two_tool_calls_become_two_tool_use_blocks() -> None:
    frames = [chunk({"role": "assistant"}),
              chunk({"tool_calls": [tool_delta(0, '{"a": ', call_id="call_a", name="Read")]}),
              chunk({"tool_calls": [tool_delta(0, "1}")]}),
              chunk({"tool_calls": [tool_delta(1, '{"b": ', call_id="call_b", name="Bash")]}),
              chunk({"tool_calls": [tool_delta(1, "2}")]}),
              chunk({}, "tool_calls", USAGE), b"[DONE]"]
    events = translate(frames)
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert [(s["id"], s["name"]) for s in starts] == [("call_a", "Read"), ("call_b", "Bash")]
    assert tool_inputs(events) == {0: {"a": 1}, 1: {"b": 2}}


OFF_GRAMMAR = {
    "reasoning_not_text": [chunk({"role": "assistant", "reasoning": {"steps": 1}})],
    "logprobs": [json.dumps({"choices": [{"index": 0, "delta": {"content": "a"}, "logprobs": {"x": 1}}]}).encode()],
    "two_choices": [json.dumps({"choices": [{"index": 0, "delta": {}}, {"index": 1, "delta": {}}]}).encode()],
    "error_event": [json.dumps({"error": {"message": "boom"}}).encode()],
    "content_filter": [chunk({"content": "a"}), chunk({}, "content_filter", USAGE)],
    "not_json": [b"{nope"],
}


@pytest.mark.parametrize("name", sorted(OFF_GRAMMAR))
def test_shapes_outside_the_grammar_hand_the_stream_back_to_litellm(name: str) -> None:
    with pytest.raises(fp._Bail):
        translate(OFF_GRAMMAR[name])


def test_a_repeating_chunk_loop_is_left_to_litellms_guard() -> None:
    grammar = fp._Grammar(wire.AnthropicStream(MODEL), 5)
    with pytest.raises(fp._Bail, match="repeated"):
        for payload in [chunk({"role": "assistant"})] + [chunk({"content": "same"})] * 6:
            grammar.feed_data(payload)


# ------------------------------------------------------------ the knob, the deployment
@pytest.mark.parametrize("value, mode", [("0", "off"), (" 0 ", "off"), ("1", "on"), ("", "on"),
                                         ("debug", "debug"), ("DEBUG", "debug")])
def test_stream_fastpath_knob(value: str, mode: str) -> None:
    assert load_patches().stream_fastpath_mode({"CCQ_STREAM_FASTPATH": value}) == mode


def test_stream_fastpath_is_on_by_default() -> None:
    assert load_patches().stream_fastpath_mode({}) == "on"


def test_fastpath_off_installs_nothing() -> None:
    # Without LiteLLM here, installing anything would fail on its import.
    assert load_patches().install_stream_fastpath({"CCQ_STREAM_FASTPATH": "0"}) is None
    assert fp.FAST_PATH.description is None


def test_the_role_deploys_the_callback_and_its_whole_package() -> None:
    tasks = yaml.safe_load((PROXY_FILES.parent / "tasks/configure.yml").read_text(encoding="utf-8"))
    copied = {task["ansible.builtin.copy"]["src"] for task in tasks if "ansible.builtin.copy" in task}
    zipped = {task["ccq_zipped_package"]["src"] for task in tasks if "ccq_zipped_package" in task}
    assert (copied, zipped) == ({"custom_callbacks.py"}, {"ccq_proxy"})
    # Nothing else of the proxy's Python lies beside them, undeployed.
    assert [p.name for p in PROXY_FILES.glob("*.py")] == ["custom_callbacks.py"]
