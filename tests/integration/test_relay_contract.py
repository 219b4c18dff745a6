"""Contract: Claude Code gets exactly what the model said, or an honest error, on both relay paths.

The real LiteLLM 1.74.0.post2 with the role's config and callback, twice: with
the stream fast path (CCQ_STREAM_FASTPATH=debug) and with LiteLLM's own stream
path (CCQ_STREAM_FASTPATH=0), in front of one strict fake Cerebras whose next
answers are queued per test (tests/fake_cerebras: recorded streams replayed byte
for byte from tests/fixtures/upstream_streams, broken connections, error bodies
and headers, non-streamed completions).  Each case must give the same, correct
result on both paths.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.http import assemble_stream, from_message, messages, request, sse_events
from helpers.stack import MODEL_ALIAS, FakeUpstream, LiteLLMProxy, upstream_and_proxies

pytestmark = pytest.mark.integration

STREAMS = Path(__file__).resolve().parents[1] / "fixtures/upstream_streams"
VISION_ALIAS = "ccq-test-vision"
VISION_MODEL = "ccq-vision-model"
PATHS = ("fast", "litellm")
TOOLS = [{"name": name, "description": f"{name} tool", "input_schema": {
             "type": "object", "properties": {prop: {"type": "string"}}}}
         for name, prop in (("Read", "file_path"), ("Bash", "command"), ("Grep", "pattern"))]
TOOLS.append({"name": "ListTodos", "description": "no parameters",
              "input_schema": {"type": "object", "properties": {}}})
PNG = base64.b64encode(bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
                                     "0000000d4944415478da63f8cfc0f01f0005000201a1e7d6ca0000000049454e44ae426082")).decode()


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory, litellm_venv: Path,
          callback_path: Path) -> Iterator[tuple[FakeUpstream, dict[str, LiteLLMProxy]]]:
    """One fake upstream, and the proxy twice: {"fast": fast path, "litellm": LiteLLM's own}."""
    root = tmp_path_factory.mktemp("contract")
    fake = FakeUpstream(root / "fake", ["--strict", "--vision-models", VISION_MODEL,
                                        "--models", f"{MODEL_ALIAS},{VISION_MODEL}"])

    def proxies(fake: FakeUpstream) -> dict[str, LiteLLMProxy]:
        extra = [{"model_name": VISION_ALIAS, "litellm_params": {
                      "model": f"cerebras/{VISION_MODEL}", "api_base": fake.api_base,
                      "api_key": "os.environ/CEREBRAS_API_KEY", "max_retries": 0},
                  "model_info": {"supports_vision": True}}]
        return {name: LiteLLMProxy(litellm_venv, root / name, fake, callback=callback_path,
                                   extra_models=extra, extra_env={"CCQ_STREAM_FASTPATH": mode})
                for name, mode in (("fast", "debug"), ("litellm", "0"))}

    with upstream_and_proxies(fake, proxies) as running:
        yield running


def queue(fake: FakeUpstream, *responses: dict[str, Any]) -> None:
    request("DELETE", fake.url + "/_fake/queue")
    resp = request("POST", fake.url + "/_fake/queue", {"responses": list(responses)},
                   {"content-type": "application/json"})
    assert resp.status == 200, resp.body


def ask(proxy: LiteLLMProxy, stream: bool, content: Any = "Read both files.", model: str = MODEL_ALIAS):
    body = {"model": model, "max_tokens": 1024, "stream": stream, "tools": TOOLS,
            "messages": [{"role": "user", "content": content}]}
    return messages(proxy.url, body, proxy.master_key)


def expected(name: str) -> dict[str, Any]:
    return json.loads((STREAMS / f"{name}.expected.json").read_text())


RECORDED = sorted(p.name.removesuffix(".sse") for p in STREAMS.glob("*.sse"))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", RECORDED)
def test_recorded_stream_reaches_claude_code_as_the_model_said_it(relay, name: str, path: str) -> None:
    fake, proxies = relay
    want = expected(name)
    queue(fake, {"kind": "sse", "file": f"{name}.sse"})
    log_mark = proxies[path].log_path.stat().st_size
    resp = ask(proxies[path], stream=True)
    assert resp.status == 200, resp.body[:300]
    if path == "fast":  # the fast path relayed it itself, unless the upstream sent an error event
        log = proxies[path].log_path.read_bytes()[log_mark:].decode(errors="replace")
        assert "ccq fastpath: fast path: stream relayed" in log
        assert ("handing stream to LiteLLM" in log) is name.startswith("error_"), log[-2000:]
    names = [n for n, _ in sse_events(resp.body)]
    if want.get("truncated"):
        assert names[-1] == "error" and "message_stop" not in names, names
        error = sse_events(resp.body)[-1][1]["error"]
        assert error["type"] in ("overloaded_error", "api_error")
        assert want.get("error_says", "") in error["message"]
        return
    result = assemble_stream(resp.body)
    assert names[-1] == "message_stop"
    assert result.blocks == want["content"]
    assert result.stop_reason == want["stop_reason"]
    assert result.usage == want["usage"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("how", ["rst", "fin"])
def test_a_broken_stream_is_an_error_event_never_a_finished_answer(relay, how: str, path: str) -> None:
    fake, proxies = relay
    queue(fake, {"kind": "sse", "file": "cerebras_text.sse", "break": how, "break_after_events": 3})
    resp = ask(proxies[path], stream=True)
    names = [n for n, _ in sse_events(resp.body)]
    assert "message_stop" not in names and "message_delta" not in names, names
    assert names[-1] == "error", names


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("how", ["rst", "fin"])
def test_requests_after_a_broken_stream_are_answered_whole(relay, how: str, path: str) -> None:
    # A connection the upstream broke must not be reused for the next request.
    fake, proxies = relay
    queue(fake, {"kind": "sse", "file": "cerebras_text.sse", "break": how, "break_after_events": 3})
    ask(proxies[path], stream=True)
    for stream in (False, True, False, True):
        resp = ask(proxies[path], stream=stream, content="Say hello.")
        assert resp.status == 200, resp.body[:500]
        result = assemble_stream(resp.body) if stream else from_message(resp.json())
        assert result.text == "ccq-fake: done"


COMPLETION = {"kind": "completion", "finish_reason": "tool_calls", "message": {
    "role": "assistant", "content": "I'll read it and list the todos.",
    "tool_calls": [{"id": "call_r", "type": "function",
                    "function": {"name": "Read", "arguments": '{"file_path": "/tmp/x"}'}},
                   {"id": "call_t", "type": "function", "function": {"name": "ListTodos", "arguments": ""}}]}}
COMPLETION_BLOCKS = [{"type": "text", "text": "I'll read it and list the todos."},
                     {"type": "tool_use", "id": "call_r", "name": "Read", "input": {"file_path": "/tmp/x"}},
                     {"type": "tool_use", "id": "call_t", "name": "ListTodos", "input": {}}]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_text_beside_tool_calls_and_empty_arguments_survive(relay, stream: bool, path: str) -> None:
    fake, proxies = relay
    queue(fake, COMPLETION)
    resp = ask(proxies[path], stream=stream)
    assert resp.status == 200, resp.body[:300]
    result = assemble_stream(resp.body) if stream else from_message(resp.json())
    assert result.blocks == COMPLETION_BLOCKS
    assert result.stop_reason == "tool_use"


ERRORS = [(400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"),
          (404, "not_found_error"), (413, "request_too_large"), (429, "rate_limit_error"),
          (500, "api_error"), (503, "overloaded_error")]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
@pytest.mark.parametrize("status, kind", ERRORS)
def test_upstream_errors_arrive_at_once_in_anthropics_envelope(relay, status: int, kind: str,
                                                               stream: bool, path: str) -> None:
    fake, proxies = relay
    message = f"ccq contract: upstream said {status}"
    # A 429 also says the minute's tokens are spent (remaining 0): its reset is made short, or the
    # quota book would rightly hold the next test's request for the fake's default 33.5 s.
    queue(fake, {"kind": "error", "status": status,
                 "headers": {"retry-after": "7", "x-ratelimit-reset-tokens-minute": "0.2"},
                 "body": {"message": message, "type": "some_type", "param": None, "code": "some_code"}})
    mark = fake.mark()
    resp = ask(proxies[path], stream=stream)
    assert [r["status"] for r in fake.records_since(mark)] == [status], "the proxy retried the upstream by itself"
    assert resp.status == status, resp.body[:300]
    assert resp.json() == {"type": "error", "error": {"type": kind, "message": message}}
    if status in (429, 503):
        assert resp.headers.get("retry-after") == "7"


@pytest.mark.parametrize("path", PATHS)
def test_a_429_without_retry_after_gets_one_from_cerebras_reset_headers(relay, path: str) -> None:
    fake, proxies = relay
    # Seconds rounded up; a short reset, so the quota book holds the next test's request only briefly.
    queue(fake, {"kind": "error", "status": 429, "headers": {"x-ratelimit-reset-tokens-minute": "1.4"}})
    resp = ask(proxies[path], stream=True)
    assert resp.status == 429
    assert resp.headers.get("retry-after") == "2"
    assert resp.json()["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_a_429_that_says_the_minute_is_spent_holds_the_next_request_until_its_reset(relay, stream: bool,
                                                                                   path: str) -> None:
    """The quota book learns from a 429's own rate-limit headers too, on both paths: the next
    request waits for the reset instead of drawing Cerebras' next 429."""
    fake, proxies = relay
    queue(fake, {"kind": "error", "status": 429, "headers": {"x-ratelimit-reset-tokens-minute": "2.5"}})
    assert ask(proxies[path], stream=stream).status == 429
    mark = fake.mark()
    started = time.monotonic()
    resp = ask(proxies[path], stream=False)
    held = time.monotonic() - started
    assert resp.status == 200, resp.body[:300]
    assert [r["status"] for r in fake.records_since(mark)] == [200]
    assert held >= 2.0, f"the request after the 429 went out after {held:.2f} s, before the reset"


@pytest.mark.parametrize("path", PATHS)
def test_an_openai_shaped_error_body_keeps_its_message(relay, path: str) -> None:
    fake, proxies = relay
    text = "Please reduce the length of the messages or completion."
    queue(fake, {"kind": "error", "status": 400,
                 "body": {"error": {"message": text, "type": "invalid_request_error",
                                    "code": "context_length_exceeded"}}})
    resp = ask(proxies[path], stream=False)
    assert resp.status == 400
    assert resp.json()["error"] == {"type": "invalid_request_error", "message": text}


def image(media: str = "image/png") -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": media, "data": PNG}}


def upstream_user_parts(fake: FakeUpstream, mark: int) -> list[Any]:
    (record,) = fake.records_since(mark)
    assert record["status"] == 200, record
    return [m for m in record["body"]["messages"] if m["role"] in ("user", "tool")]


def test_an_image_reaches_a_vision_model_as_a_data_url(relay) -> None:
    fake, proxies = relay
    mark = fake.mark()
    resp = ask(proxies["fast"], stream=False, model=VISION_ALIAS,
               content=[{"type": "text", "text": "What is this?"}, image()])
    assert resp.status == 200, resp.body[:300]
    (user,) = upstream_user_parts(fake, mark)
    assert {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}} in user["content"]


def test_an_image_becomes_a_note_for_a_text_only_model(relay) -> None:
    fake, proxies = relay
    mark = fake.mark()
    resp = ask(proxies["fast"], stream=False, content=[{"type": "text", "text": "What is this?"}, image("image/jpeg")])
    assert resp.status == 200, resp.body[:300]
    (user,) = upstream_user_parts(fake, mark)
    assert "image/jpeg" in json.dumps(user) and "omitted" in json.dumps(user)
    assert "image_url" not in json.dumps(user)


@pytest.mark.parametrize("alias, expect_image", [(MODEL_ALIAS, False), (VISION_ALIAS, True)])
def test_an_image_in_a_tool_result_reaches_the_model_it_can(relay, alias: str, expect_image: bool) -> None:
    fake, proxies = relay
    body = {"model": alias, "max_tokens": 256, "stream": False, "tools": TOOLS, "messages": [
        {"role": "user", "content": "Read the screenshot."},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Read",
                                           "input": {"file_path": "/tmp/s.png"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": [{"type": "text", "text": "screenshot:"}, image()]}]}]}
    mark = fake.mark()
    resp = messages(proxies["litellm"].url, body, proxies["litellm"].master_key)
    assert resp.status == 200, resp.body[:300]
    parts = upstream_user_parts(fake, mark)
    tool = [p for p in parts if p["role"] == "tool"]
    assert len(tool) == 1 and isinstance(tool[0]["content"], str) and "screenshot:" in tool[0]["content"]
    has_image = f"data:image/png;base64,{PNG}" in json.dumps(parts)
    assert has_image is expect_image
    if not expect_image:
        assert "omitted" in tool[0]["content"]


# ------------------------------------------------------------------ the real Claude Code
def claude(proxy: LiteLLMProxy, claude_code_bin: Path, tmp_path: Path, prompt: str):
    from helpers.claude import run_claude_p, stream_json_events

    proc = run_claude_p(claude_code_bin, tmp_path / "home", tmp_path / "project", proxy.url,
                        proxy.master_key, prompt, timeout=180)
    events = stream_json_events(proc.stdout)
    assert proc.returncode == 0 and events and events[-1].get("type") == "result", (
        f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return events[-1]


@pytest.mark.parametrize("path", PATHS)
def test_claude_code_runs_two_parallel_reads_and_returns_both_results(relay, claude_code_bin: Path,
                                                                      tmp_path: Path, path: str) -> None:
    fake, proxies = relay
    project = tmp_path / "project"
    project.mkdir()
    files = {name: project / f"{name}.txt" for name in ("alpha", "beta")}
    for name, file in files.items():
        file.write_text(f"ccq parallel {name} contents\n")
    probe = f"ccq-parallel-probe-{path}"
    queue(fake, {"kind": "tool_calls", "match": probe, "tools": True, "calls": [
        {"id": f"call_{name}_{path}", "name": "Read", "arguments": {"file_path": str(file)}}
        for name, file in files.items()]})
    mark = fake.mark()
    claude(proxies[path], claude_code_bin, tmp_path, f"{probe}: read alpha.txt and beta.txt")
    followups = [r["body"] for r in fake.records_since(mark)
                 if any(m["role"] == "tool" for m in r["body"].get("messages", []))]
    assert followups, "no request carried the tool results"
    tools = {m["tool_call_id"]: m["content"] for m in followups[0]["messages"] if m["role"] == "tool"}
    assert sorted(tools) == sorted(f"call_{name}_{path}" for name in files)
    for name in files:
        assert f"ccq parallel {name} contents" in tools[f"call_{name}_{path}"]


@pytest.mark.parametrize("path", PATHS)
def test_claude_code_retries_a_broken_stream_and_prints_the_whole_answer(relay, claude_code_bin: Path,
                                                                        tmp_path: Path, path: str) -> None:
    fake, proxies = relay
    probe = f"ccq-retry-probe-{path}"
    full = expected("cerebras_text")["content"][0]["text"]
    # Claude Code retries a broken stream by streaming again or, at times, by its
    # non-streaming fallback: the second answer serves either.
    queue(fake, {"kind": "sse", "file": "cerebras_text.sse", "break": "fin", "break_after_events": 3,
                 "match": probe, "tools": True},
          {"kind": "completion", "message": {"role": "assistant", "content": full}, "finish_reason": "stop",
           "match": probe, "tools": True})
    mark = fake.mark()
    result = claude(proxies[path], claude_code_bin, tmp_path, f"{probe}: say hello")
    asked = [r for r in fake.records_since(mark) if probe in json.dumps(r["body"].get("messages", [])[-1:])]
    assert len(asked) == 2, "Claude Code did not retry the broken stream"
    assert result.get("is_error") is False and result.get("result") == full


# ------------------------------------------------------------------ issue 21
def fake_prompt_tokens(upstream_body: dict[str, Any]) -> int:
    """The fake's prompt_tokens of a request (tests/fake_cerebras: a quarter of the compact JSON)."""
    def size(value: Any) -> int:
        return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    n = size(upstream_body.get("messages")) + (size(upstream_body["tools"]) if upstream_body.get("tools") else 0)
    return max(1, -(-n // 4))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_prompt_tokens_read_from_cerebras_cache_arrive_as_cache_reads(relay, stream: bool, path: str) -> None:
    # A: Anthropic's input_tokens exclude the prompt tokens read from the cache.
    fake, proxies = relay
    queue(fake, {"kind": "completion", "message": {"role": "assistant", "content": "cached"},
                 "finish_reason": "stop", "cached_tokens": 30})
    mark = fake.mark()
    resp = ask(proxies[path], stream=stream)
    assert resp.status == 200, resp.body[:300]
    (record,) = fake.records_since(mark)
    prompt = fake_prompt_tokens(record["body"])
    usage = (assemble_stream(resp.body) if stream else from_message(resp.json())).usage
    assert usage["cache_read_input_tokens"] == 30
    assert usage["input_tokens"] == prompt - 30
    if stream:
        start = sse_events(resp.body)[0][1]
        assert start["message"]["usage"]["cache_read_input_tokens"] == 0


def history(*turns: dict[str, Any], tools: Any = TOOLS, **fields: Any) -> dict[str, Any]:
    body = {"model": MODEL_ALIAS, "max_tokens": 256, "messages": list(turns), **fields}
    if tools is not None:
        body["tools"] = tools
    return body


def upstream_body(fake: FakeUpstream, proxy: LiteLLMProxy, body: dict[str, Any], stream: bool) -> dict[str, Any]:
    """Send body through the proxy; the request the (strict) fake accepted."""
    mark = fake.mark()
    resp = messages(proxy.url, dict(body, stream=stream), proxy.master_key)
    assert resp.status == 200, resp.body[:500]
    (record,) = fake.records_since(mark)
    assert record["status"] == 200, record
    return record["body"]


USER = {"role": "user", "content": "What is new in Python 3.14?"}
SEARCHED = {"role": "assistant", "content": [
    {"type": "text", "text": "Let me search the web."},
    {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "python 3.14"}},
    {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [
        {"type": "web_search_result", "title": "What's new in Python 3.14",
         "url": "https://docs.python.org/3.14/whatsnew", "encrypted_content": "EqgfCioIARgB"}]},
    {"type": "text", "text": "Python 3.14 adds template strings.", "citations": [
        {"type": "web_search_result_location", "url": "https://docs.python.org/3.14/whatsnew",
         "title": "What's new in Python 3.14", "encrypted_index": "Eo8B", "cited_text": "PEP 750"}]}]}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_history_text_blocks_reach_the_model_apart_and_readable(relay, stream: bool, path: str) -> None:
    # B: blocks joined by a blank line; web search blocks and citations keep title, URL, quote.
    fake, proxies = relay
    sent = upstream_body(fake, proxies[path], history(USER, SEARCHED, {"role": "user", "content": "thanks"}), stream)
    said = next(m for m in sent["messages"] if m["role"] == "assistant")["content"]
    assert "Let me search the web.\n\n" in said and "search the web.Python" not in said
    for part in ("python 3.14", "What's new in Python 3.14", "https://docs.python.org/3.14/whatsnew",
                 "Python 3.14 adds template strings.", '"PEP 750"'):
        assert part in said, part
    assert "EqgfCioIARgB" not in said


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_a_failed_tool_result_reaches_the_model_as_a_failure(relay, stream: bool, path: str) -> None:
    # C: an OpenAI tool message has no error flag: the text says it.
    fake, proxies = relay
    body = history(USER, {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_e1", "name": "Bash", "input": {"command": "false"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_e1",
                                      "content": "Exit code 1", "is_error": True}]})
    sent = upstream_body(fake, proxies[path], body, stream)
    (tool,) = [m for m in sent["messages"] if m["role"] == "tool"]
    assert tool["content"] == "Error: Exit code 1"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_tool_choice_none_offers_no_tool_and_no_tool_choice_goes_without_tools(relay, stream: bool, path: str) -> None:
    # D: "none" was dropped and the tools stayed on offer; tool_choice without tools is a 400 on Cerebras v2.
    fake, proxies = relay
    sent = upstream_body(fake, proxies[path], history(USER, tool_choice={"type": "none"}), stream)
    assert "tools" not in sent and "tool_choice" not in sent
    sent = upstream_body(fake, proxies[path], history(USER, tools=None, tool_choice={"type": "auto"}), stream)
    assert "tools" not in sent and "tool_choice" not in sent


def tool_use(call_id: str, name: str = "Bash", **args: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": args or {"command": "ls"}}


def tool_result(call_id: str, content: str = "ok", **extra: Any) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": call_id, "content": content, **extra}


HISTORIES = {
    "interrupted_tool_call": [USER, {"role": "assistant", "content": [tool_use("toolu_i1", command="sleep 99")]},
                              {"role": "user", "content": [
                                  tool_result("toolu_i1", "[Request interrupted by user for tool use]", is_error=True),
                                  {"type": "text", "text": "[Request interrupted by user for tool use]"},
                                  {"type": "text", "text": "do something else"}]}],
    "tool_use_without_result": [USER, {"role": "assistant", "content": [tool_use("toolu_a1")]},
                                {"role": "user", "content": "never mind"}],
    "resumed_session": [USER, {"role": "assistant", "content": [
                            {"type": "thinking", "thinking": "Read it.", "signature": "EuYBCkQYAiJA"},
                            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va"}, tool_use("toolu_r1")]},
                        {"role": "user", "content": "(session resumed)"},
                        {"role": "assistant", "content": [{"type": "text", "text": "Resuming."}]},
                        {"role": "user",
                         "content": [tool_result("toolu_r1", "late"), {"type": "text", "text": "go on"}]}],
    "duplicate_ids": [USER, {"role": "assistant", "content": [tool_use("call_0")]},
                      {"role": "user", "content": [tool_result("call_0", "first")]},
                      {"role": "assistant", "content": [tool_use("call_0"), tool_use("call_0", command="pwd")]},
                      {"role": "user", "content": [tool_result("call_0", "second"), tool_result("call_0", "third")]}],
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
@pytest.mark.parametrize("name", sorted(HISTORIES))
def test_histories_cerebras_v2_would_refuse_are_sent_so_it_accepts_them(relay, name: str, stream: bool,
                                                                        path: str) -> None:
    # E: the strict fake enforces v2's tool rules (a 400 fails upstream_body).
    fake, proxies = relay
    sent = upstream_body(fake, proxies[path], history(*HISTORIES[name]), stream)
    ids = [c["id"] for m in sent["messages"] for c in m.get("tool_calls") or ()]
    assert len(ids) == len(set(ids))


def bad_args_completion(arguments: str) -> dict[str, Any]:
    return {"kind": "completion", "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None,
        "tool_calls": [{"id": "call_f", "type": "function", "function": {"name": "Bash", "arguments": arguments}}]}}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
@pytest.mark.parametrize("arguments", ['{"command": "ls"}<|call|>', '```json\n{"command": "ls"}\n```',
                                       '{"command": "ls",}', '{"command": "ls"'],
                         ids=["harmony_leftover", "code_fence", "trailing_comma", "missing_closing_brace"])
def test_tool_arguments_with_an_unambiguous_defect_arrive_repaired(relay, arguments: str, stream: bool,
                                                                    path: str) -> None:
    # F: 1.74 answered a non-streamed one with a 500 and streamed the bytes as they came.
    fake, proxies = relay
    queue(fake, bad_args_completion(arguments))
    resp = ask(proxies[path], stream=stream)
    assert resp.status == 200, resp.body[:300]
    result = assemble_stream(resp.body) if stream else from_message(resp.json())
    assert result.blocks == [{"type": "tool_use", "id": "call_f", "name": "Bash", "input": {"command": "ls"}}]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_tool_arguments_that_are_no_object_are_an_error_claude_code_retries(relay, stream: bool, path: str) -> None:
    fake, proxies = relay
    queue(fake, bad_args_completion("ls -l /tmp"))
    resp = ask(proxies[path], stream=stream)
    if stream:
        names = [n for n, _ in sse_events(resp.body)]
        assert names[-1] == "error" and "message_stop" not in names, names
        error = sse_events(resp.body)[-1][1]["error"]
    else:
        assert resp.status == 529, resp.body[:300]
        error = resp.json()["error"]
    assert error["type"] == "overloaded_error" and "Bash" in error["message"] and "ls -l" not in error["message"]
