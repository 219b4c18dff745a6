"""The fake Cerebras upstream behaves as the integration tests assume.

Fast: each test runs the server in-process on a free loopback port.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("fake_cerebras", HERE / "fake_cerebras.py")
fc = importlib.util.module_from_spec(_spec)
sys.modules["fake_cerebras"] = fc
_spec.loader.exec_module(fc)  # type: ignore[union-attr]

sys.path.insert(0, str(HERE.parent))
from helpers.http import request, sse_events  # noqa: E402

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


def test_default_models_include_the_seed_model_and_current_ones() -> None:
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
