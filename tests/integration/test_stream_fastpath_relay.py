"""The stream fast path (item l, ccq_proxy/stream_fastpath.py) changes nothing the client sees.

Two real LiteLLM 1.74.0.post2 proxies with the role's config and callback run
side by side in front of the same upstreams: one with the fast path
(CCQ_STREAM_FASTPATH=debug: on, and it logs which path relayed each stream),
one with LiteLLM's own stream path plus ccq's fixes (CCQ_STREAM_FASTPATH=0).
The raw SSE bodies must be identical once the random ids are blanked: same
events, same text, same tool_use input.  Upstreams: the fake Cerebras (text,
a tool call with content null and with content "") and a scripted two-tool
stream the fake cannot produce.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from helpers.http import assemble_stream, messages, sse_events
from helpers.stack import EMPTY_CONTENT_ALIAS, MODEL_ALIAS, FakeUpstream, LiteLLMProxy

pytestmark = pytest.mark.integration

TWO_TOOLS_ALIAS = "ccq-test-two-tools"
TEXT_TOKENS = 300
# Random per response: LiteLLM's message id and the fake's tool-call ids.
RANDOM_IDS = re.compile(rb'"msg_[0-9a-f-]{36}"|"call_[0-9a-f]{24}"')
AGENT_TOOL = {
    "name": "Agent", "description": "Launch a new agent.",
    "input_schema": {"type": "object", "properties": {
        "description": {"type": "string"}, "prompt": {"type": "string"},
        "subagent_type": {"type": "string"}}, "required": ["description", "prompt"]},
}
EXPECTED_AGENT_INPUT = {
    "description": "ccq subagent probe",
    "prompt": "ccq-subagent-probe: reply with the single word pong",
    "subagent_type": "general-purpose",
}


# ---------------------------------------------------------------- a scripted two-tool upstream
def _two_tool_sse(model: str) -> bytes:
    """Cerebras-shaped stream with two parallel tool calls (ids fixed, usage on the finish chunk)."""
    def event(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
        body: dict[str, Any] = {"id": "chatcmpl-two", "object": "chat.completion.chunk", "created": 1,
                                "model": model, "system_fingerprint": "fp_ccq",
                                "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]}
        body.update(extra)
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    def call(index: int, args: str, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
        tc: dict[str, Any] = {"index": index, "function": {"arguments": args}}
        if call_id:
            tc.update(id=call_id, type="function")
            tc["function"]["name"] = name
        return {"content": None, "tool_calls": [tc]}

    frames = [event({"role": "assistant", "content": None}),
              event(call(0, "", "call_read_0001", "Read")), event(call(0, '{"file_path": ')),
              event(call(0, '"/tmp/a.txt"}')),
              event(call(1, "", "call_bash_0002", "Bash")), event(call(1, '{"command": ')),
              event(call(1, '"ls -l"}')),
              event(None, "tool_calls", usage={"prompt_tokens": 40, "completion_tokens": 12,
                                                "total_tokens": 52})]
    return b"".join(frames) + b"data: [DONE]\n\n"


class _TwoToolHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
        payload = _two_tool_sse(str(body.get("model", "")))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture(scope="module")
def two_tool_upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TwoToolHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()


# ---------------------------------------------------------------- the two proxies
@pytest.fixture(scope="module")
def proxies(tmp_path_factory: pytest.TempPathFactory, litellm_venv: Path, callback_path: Path,
            two_tool_upstream: str) -> Iterator[dict[str, LiteLLMProxy]]:
    """{"on": fast path, "off": LiteLLM's own path}, same config and upstreams."""
    root = tmp_path_factory.mktemp("fastpath")
    fake = FakeUpstream(root / "fake", ["--strict", "--stream-tokens", str(TEXT_TOKENS),
                                        "--tool-arg-chunks", "7"])
    fake_empty = FakeUpstream(root / "fake-empty", ["--strict", "--empty-content-shape", "empty",
                                                    "--tool-arg-chunks", "7"], api_key=fake.api_key)
    started: dict[str, LiteLLMProxy] = {}
    try:
        fake.start()
        fake_empty.start()
        extra = [{"model_name": EMPTY_CONTENT_ALIAS, "litellm_params": {
                      "model": f"cerebras/{MODEL_ALIAS}", "api_base": fake_empty.api_base,
                      "api_key": "os.environ/CEREBRAS_API_KEY"}},
                 {"model_name": TWO_TOOLS_ALIAS, "litellm_params": {
                      "model": f"cerebras/{MODEL_ALIAS}", "api_base": two_tool_upstream,
                      "api_key": "os.environ/CEREBRAS_API_KEY"}}]
        for name, mode in (("on", "debug"), ("off", "0")):
            started[name] = LiteLLMProxy(litellm_venv, root / name, fake, callback=callback_path,
                                         extra_models=extra, extra_env={"CCQ_STREAM_FASTPATH": mode}).start()
        yield started
    finally:
        for proxy in started.values():
            proxy.stop()
        fake_empty.stop()
        fake.stop()


def stream(proxy: LiteLLMProxy, model: str, tools: bool) -> bytes:
    body: dict[str, Any] = {"model": model, "max_tokens": 1024, "stream": True,
                            "messages": [{"role": "user", "content": "Use the Agent tool once." if tools
                                          else "Say something long."}]}
    if tools:
        body["tools"] = [AGENT_TOOL]
    resp = messages(proxy.url, body, proxy.master_key)
    assert resp.status == 200, resp.body[:500]
    return resp.body


def normalised(raw: bytes) -> bytes:
    return RANDOM_IDS.sub(b'"<id>"', raw)


CASES = {
    "text": (MODEL_ALIAS, False),
    "tool_content_null": (MODEL_ALIAS, True),
    "tool_content_empty_string": (EMPTY_CONTENT_ALIAS, True),
    "two_tools": (TWO_TOOLS_ALIAS, True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_path_stream_is_identical_to_litellms_own(proxies: dict[str, LiteLLMProxy], case: str) -> None:
    model, tools = CASES[case]
    fast, stock = stream(proxies["on"], model, tools), stream(proxies["off"], model, tools)
    assert sse_events(normalised(fast)) == sse_events(normalised(stock))
    assert normalised(fast) == normalised(stock)  # byte for byte, framing included
    names = [name for name, _ in sse_events(fast)]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    if case == "two_tools":
        # 1.74 put both calls' arguments into ONE tool_use block (its
        # _should_start_new_content_block ignores the tool index).
        assert [(t["id"], t["name"], t["input"]) for t in assemble_stream(fast).tool_uses] == [
            ("call_read_0001", "Read", {"file_path": "/tmp/a.txt"}), ("call_bash_0002", "Bash", {"command": "ls -l"})]
        return
    result = assemble_stream(fast)
    if case == "text":
        assert result.stop_reason == "end_turn"
        assert sum(name == "content_block_delta" for name in result.events) >= TEXT_TOKENS
        assert result.text.endswith(f" t{TEXT_TOKENS - 1}")  # the fake's last filler token
    else:
        assert result.stop_reason == "tool_use"
        assert [t["input"] for t in result.tool_uses] == [EXPECTED_AGENT_INPUT]


def test_the_fast_path_really_relayed_the_streams(proxies: dict[str, LiteLLMProxy]) -> None:
    stream(proxies["on"], MODEL_ALIAS, False)
    log = proxies["on"].log_path.read_text(errors="replace")
    assert "ccq fastpath: fast path: stream relayed" in log
    assert "stock path" not in log and "handing stream to LiteLLM" not in log
    assert "ccq fastpath" not in proxies["off"].log_path.read_text(errors="replace")


def test_four_concurrent_fast_streams_stay_separate(proxies: dict[str, LiteLLMProxy]) -> None:
    # 1.74 kept the adapter's event queue on the class, so concurrent streams
    # stole each other's events; ccq's per-stream queue and the fast path's own
    # state must keep every stream whole.
    jobs = [(MODEL_ALIAS, False), (MODEL_ALIAS, True), (EMPTY_CONTENT_ALIAS, True), (TWO_TOOLS_ALIAS, True)] * 2
    expected = {job: normalised(stream(proxies["off"], *job)) for job in set(jobs)}
    for _ in range(2):
        with ThreadPoolExecutor(max_workers=4) as pool:
            got = list(pool.map(lambda job: normalised(stream(proxies["on"], *job)), jobs))
        for job, raw in zip(jobs, got, strict=True):
            assert raw == expected[job], f"stream {job} differs under concurrency"
