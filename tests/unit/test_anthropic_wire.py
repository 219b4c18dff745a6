"""What Claude Code receives (ccq_proxy/anthropic_wire.py, shared by both relay paths).

Plain Python: the translator is fed OpenAI chunk dicts, as the fast path and
LiteLLM's own path feed it; the events are read back the way Claude Code's SDK
assembles them (tests/helpers/http.assemble_stream).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from helpers.http import assemble_stream, sse_events
from helpers.modules import load_proxy_module

wire = load_proxy_module("anthropic_wire")
USAGE = {"prompt_tokens": 40, "completion_tokens": 12}


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, usage: dict[str, int] | None = None):
    body: dict[str, Any] = {"id": "chatcmpl-1", "choices": [{"index": 0, "delta": delta or {},
                                                            "finish_reason": finish}]}
    if usage:
        body["usage"] = usage
    return body


def call(index: int, args: str, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    tc: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if call_id:
        tc.update(id=call_id, type="function")
        tc["function"]["name"] = name
    return tc


def relay(chunks: list[dict[str, Any]], upstream_finished: bool | None = None) -> bytes:
    stream = wire.AnthropicStream("m")
    out = stream.take()
    for c in chunks:
        stream.feed(c)
        out += stream.take()
    out += stream.finish(upstream_finished)
    return b"".join(out)


def blocks(body: bytes) -> list[dict[str, Any]]:
    return assemble_stream(body).blocks


def event_types(body: bytes) -> list[str]:
    return [name for name, _ in sse_events(body)]


READ_A = {"file_path": "/tmp/a.txt"}
READ_B = {"file_path": "/tmp/b.txt"}
BASH = {"command": "ls -l"}
EXPECTED_THREE = [{"type": "tool_use", "id": "call_a", "name": "Read", "input": READ_A},
                  {"type": "tool_use", "id": "call_b", "name": "Read", "input": READ_B},
                  {"type": "tool_use", "id": "call_c", "name": "Bash", "input": BASH}]


def whole(index: int, call_id: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return call(index, json.dumps(args), call_id, name)


PARALLEL_SHAPES = {
    # Cerebras: each call whole in its own delta
    "separate_deltas": [chunk({"role": "assistant"}), chunk({"tool_calls": [whole(0, "call_a", "Read", READ_A)]}),
                        chunk({"tool_calls": [whole(1, "call_b", "Read", READ_B)]}),
                        chunk({"tool_calls": [whole(2, "call_c", "Bash", BASH)]}),
                        chunk(finish="tool_calls", usage=USAGE)],
    "one_delta": [chunk({"tool_calls": [whole(0, "call_a", "Read", READ_A), whole(1, "call_b", "Read", READ_B),
                                        whole(2, "call_c", "Bash", BASH)]}), chunk(finish="tool_calls", usage=USAGE)],
    # OpenAI: header, then argument pieces, one call after the other
    "incremental": [chunk({"tool_calls": [call(0, "", "call_a", "Read")]}),
                    chunk({"tool_calls": [call(0, '{"file_path": ')]}),
                    chunk({"tool_calls": [call(0, '"/tmp/a.txt"}')]}),
                    chunk({"tool_calls": [call(1, "", "call_b", "Read")]}),
                    chunk({"tool_calls": [call(1, '{"file_path": "/tmp/b.txt"}')]}),
                    chunk({"tool_calls": [call(2, '{"command"', "call_c", "Bash")]}),
                    chunk({"tool_calls": [call(2, ': "ls -l"}')]}),
                    chunk(finish="tool_calls", usage=USAGE)],
    "interleaved": [chunk({"tool_calls": [call(0, "", "call_a", "Read"), call(1, "", "call_b", "Read")]}),
                    chunk({"tool_calls": [call(2, "", "call_c", "Bash")]}),
                    chunk({"tool_calls": [call(1, '{"file_path": ')]}),
                    chunk({"tool_calls": [call(0, '{"file_path": ')]}),
                    chunk({"tool_calls": [call(2, '{"command": ')]}),
                    chunk({"tool_calls": [call(0, '"/tmp/a.txt"}'), call(1, '"/tmp/b.txt"}')]}),
                    chunk({"tool_calls": [call(2, '"ls -l"}')]}),
                    chunk(finish="tool_calls", usage=USAGE)],
}


@pytest.mark.parametrize("shape", sorted(PARALLEL_SHAPES))
def test_parallel_tool_calls_become_one_tool_use_block_each_in_order(shape: str) -> None:
    body = relay(PARALLEL_SHAPES[shape])
    message = assemble_stream(body)
    assert message.blocks == EXPECTED_THREE
    assert message.stop_reason == "tool_use"
    assert event_types(body)[-1] == "message_stop"


def test_block_indexes_count_up_one_by_one() -> None:
    body = relay(PARALLEL_SHAPES["interleaved"])
    starts = [json.loads(line[6:])["index"] for line in body.decode().splitlines()
              if line.startswith("data: ") and '"content_block_start"' in line]
    assert starts == [0, 1, 2]


def test_text_before_and_after_tool_calls_stays_in_order() -> None:
    body = relay([chunk({"content": "I'll read "}), chunk({"content": "both."}),
                  chunk({"tool_calls": [whole(0, "call_a", "Read", READ_A)]}),
                  chunk({"content": "Then done."}), chunk(finish="tool_calls", usage=USAGE)])
    assert blocks(body) == [{"type": "text", "text": "I'll read both."}, EXPECTED_THREE[0],
                            {"type": "text", "text": "Then done."}]


def test_empty_content_beside_a_tool_call_keeps_the_arguments() -> None:
    body = relay([chunk({"content": "", "tool_calls": [whole(0, "call_a", "Read", READ_A)]}),
                  chunk({"content": ""}, "tool_calls", USAGE)])
    assert blocks(body) == [EXPECTED_THREE[0]]


@pytest.mark.parametrize("args", ["", None])
def test_a_tool_without_arguments_gets_input_empty_object(args: str | None) -> None:
    tc = {"index": 0, "id": "call_x", "function": {"name": "ListTodos", "arguments": args}}
    body = relay([chunk({"tool_calls": [tc]}), chunk(finish="tool_calls", usage=USAGE)])
    assert blocks(body) == [{"type": "tool_use", "id": "call_x", "name": "ListTodos", "input": {}}]


def test_a_tool_call_finished_with_stop_is_still_tool_use() -> None:
    body = relay([chunk({"tool_calls": [whole(0, "call_a", "Read", READ_A)]}), chunk(finish="stop", usage=USAGE)])
    assert assemble_stream(body).stop_reason == "tool_use"


def test_usage_and_stop_reason_reach_message_delta() -> None:
    body = relay([chunk({"content": "hi"}), chunk(finish="length", usage=USAGE)])
    message = assemble_stream(body)
    assert message.stop_reason == "max_tokens"
    assert message.usage == {"input_tokens": 40, "output_tokens": 12}


def test_an_empty_answer_is_one_empty_text_block() -> None:
    assert blocks(relay([chunk(finish="stop", usage=USAGE)])) == [{"type": "text", "text": ""}]


@pytest.mark.parametrize("chunks", [
    [chunk({"content": "The answer is"})],
    [chunk({"tool_calls": [call(0, '{"file_pa', "call_a", "Read")]})],
    [],
])
def test_a_stream_without_finish_ends_in_an_error_event_not_message_stop(chunks: list[dict[str, Any]]) -> None:
    body = relay(chunks)
    types = event_types(body)
    assert types[-1] == "error" and "message_stop" not in types and "message_delta" not in types
    error = json.loads(body.decode().rstrip().splitlines()[-1][6:])
    assert error == {"type": "error", "error": {"type": "overloaded_error", "message": wire.TRUNCATED_STREAM_MESSAGE}}


def test_litellms_invented_finish_does_not_hide_a_truncated_stream() -> None:
    body = relay([chunk({"content": "The answer"}), chunk(finish="stop")], upstream_finished=False)
    assert event_types(body)[-1] == "error"


def test_fail_mid_stream_is_one_error_event_and_nothing_after() -> None:
    stream = wire.AnthropicStream("m")
    stream.feed(chunk({"content": "x"}))
    stream.take()
    assert event_types(b"".join(stream.fail("api_error", "boom"))) == ["error"]
    assert stream.finish(True) == []


# ------------------------------------------------------------------ non-streaming
def test_non_streamed_text_and_tool_calls_are_both_kept_in_order() -> None:
    calls = [{"id": "call_a", "function": {"name": "Read", "arguments": json.dumps(READ_A)}},
             {"id": "call_x", "function": {"name": "ListTodos", "arguments": ""}}]
    assert wire.anthropic_content("Reading.", calls) == [
        {"type": "text", "text": "Reading."}, EXPECTED_THREE[0],
        {"type": "tool_use", "id": "call_x", "name": "ListTodos", "input": {}}]


def test_non_json_arguments_are_an_error_not_a_made_up_input() -> None:
    with pytest.raises(ValueError):
        wire.anthropic_content(None, [{"id": "c", "function": {"name": "Read", "arguments": "{oops"}}])


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("status, kind", [
    (400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"),
    (404, "not_found_error"), (413, "request_too_large"), (429, "rate_limit_error"),
    (500, "api_error"), (502, "api_error"), (503, "overloaded_error"), (529, "overloaded_error"),
    (422, "invalid_request_error")])
def test_status_maps_to_anthropic_error_type(status: int, kind: str) -> None:
    assert wire.anthropic_error_type(status) == kind


CEREBRAS_429 = ('litellm.RateLimitError: RateLimitError: CerebrasException - {"message":"Tokens per minute '
                'limit exceeded - too many tokens processed.","type":"too_many_requests_error",'
                '"param":"quota","code":"token_quota_exceeded"}')


@pytest.mark.parametrize("raw, message", [
    (CEREBRAS_429, "Tokens per minute limit exceeded - too many tokens processed."),
    ('litellm.BadRequestError: OpenAIException - {"error": {"message": "Please reduce the length of the '
     'messages or completion.", "type": "invalid_request_error"}}',
     "Please reduce the length of the messages or completion."),
    ("litellm.APIConnectionError: CerebrasException - Connection refused",
     "Connection refused"),
    ('{"detail": "Not authenticated"}', "Not authenticated"),
])
def test_the_upstreams_own_words_are_kept(raw: str, message: str) -> None:
    assert wire.upstream_error_message(raw) == message


@pytest.mark.parametrize("headers, expected", [
    ({"Retry-After": "7"}, "7"),
    ({"retry-after": "7", "x-ratelimit-reset-tokens-minute": "30"}, "7"),
    ({"x-ratelimit-reset-tokens-minute": "33.2"}, "34"),
    ({"x-ratelimit-reset-requests-minute": "0.2"}, "1"),
    ({"x-ratelimit-reset-tokens": "1m30s"}, "90"),
    ({"x-ratelimit-reset-requests-day": "40000"}, None),
    ({}, None),
    (None, None),
])
def test_retry_after_comes_from_the_upstream_or_cerebras_reset_headers(headers, expected) -> None:
    assert wire.retry_after(headers) == expected


def test_a_429_answer_is_anthropic_shaped_with_retry_after() -> None:
    body, headers = wire.anthropic_error(429, CEREBRAS_429, {"x-ratelimit-reset-tokens-minute": "12"})
    assert body == {"type": "error", "error": {
        "type": "rate_limit_error", "message": "Tokens per minute limit exceeded - too many tokens processed."}}
    assert headers == {"retry-after": "12"}


def test_a_400_answer_carries_no_retry_after() -> None:
    assert wire.anthropic_error(400, "bad", {"retry-after": "3"})[1] == {}


def test_a_long_think_sends_pings_never_the_reasoning() -> None:
    """Reasoning deltas are not relayed; while they last, a ping every PING_INTERVAL seconds."""
    now = [0.0]
    stream = wire.AnthropicStream("m", clock=lambda: now[0])
    out = stream.take()
    for _ in range(30):  # 30 reasoning chunks over 12 s
        now[0] += 0.4
        stream.feed(chunk({"reasoning": "let me think about the files "}))
        out += stream.take()
    stream.feed(chunk({"content": "Done."}))
    out += stream.take() + stream.finish()
    body = b"".join(out)
    assert event_types(body).count("ping") == int(12 // wire.PING_INTERVAL)
    assert b"think about" not in body
    assert blocks(body) == [{"type": "text", "text": "Done."}]


def test_no_ping_while_the_answer_itself_flows() -> None:
    now = [0.0]
    stream = wire.AnthropicStream("m", clock=lambda: now[0])
    for _ in range(20):
        now[0] += 1.0
        stream.feed(chunk({"content": "x", "reasoning": "also thinking"}))
    stream.feed(chunk(finish="stop", usage=USAGE))
    assert "ping" not in event_types(b"".join(stream.take() + stream.finish()))


# ---------------------------------------------------------------- issue 21 F: tool arguments
@pytest.mark.parametrize("raw, want", [
    ('{"command": "ls"}', {"command": "ls"}),
    ('{"command": "ls"}<|call|>', {"command": "ls"}),  # gpt-oss harmony leftover
    ('```json\n{"command": "ls"}\n```', {"command": "ls"}),  # a code fence
    ('{"command": "ls",}', {"command": "ls"}),  # qwen: a trailing comma (json-repair)
    ('{"command": "ls"', {"command": "ls"}),  # qwen: the closing brace missing (json-repair)
    ("", {}),
])
def test_tool_arguments_are_repaired_when_the_defect_is_unambiguous(raw: str, want: dict[str, Any]) -> None:
    assert json.loads(wire.repair_arguments(raw, "Bash")) == want
    body = relay([chunk({"tool_calls": [call(0, raw, "call_a", "Bash")]}), chunk(finish="tool_calls", usage=USAGE)])
    assert blocks(body) == [{"type": "tool_use", "id": "call_a", "name": "Bash", "input": want}]


@pytest.mark.parametrize("raw", ["not json", '["ls"]', '"ls"'])
def test_arguments_that_cannot_become_an_object_end_the_stream_in_a_retryable_error(raw: str) -> None:
    body = relay([chunk({"tool_calls": [call(0, raw, "call_a", "Bash")]}), chunk(finish="tool_calls", usage=USAGE)])
    names = event_types(body)
    assert names[-1] == "error" and "message_stop" not in names and "content_block_stop" not in names
    assert sse_events(body)[-1][1]["error"]["type"] == "overloaded_error"
    with pytest.raises(wire.ToolArgumentsError) as err:
        wire.anthropic_content(None, [{"id": "c", "function": {"name": "Bash", "arguments": raw}}])
    assert err.value.status_code == 529


def test_incremental_arguments_are_complete_before_the_block_stops() -> None:
    # One input_json_delta per call, whole, then its content_block_stop.
    body = relay([chunk({"tool_calls": [call(0, "", "call_a", "Read")]}), chunk({"tool_calls": [call(0, '{"file_')]}),
                  chunk({"tool_calls": [call(0, 'path": "/tmp/a.txt"}')]}), chunk(finish="tool_calls", usage=USAGE)])
    deltas = [d for n, d in sse_events(body) if n == "content_block_delta"]
    assert [d["delta"]["partial_json"] for d in deltas] == ['{"file_path": "/tmp/a.txt"}']


def test_cached_prompt_tokens_are_cache_reads_not_input() -> None:
    usage = dict(USAGE, prompt_tokens_details={"cached_tokens": 30})
    message = assemble_stream(relay([chunk({"content": "hi"}), chunk(finish="stop", usage=usage)]))
    assert message.usage == {"input_tokens": 10, "output_tokens": 12, "cache_read_input_tokens": 30}
    assert wire.anthropic_usage(40, 12, None) == {"input_tokens": 40, "output_tokens": 12}
