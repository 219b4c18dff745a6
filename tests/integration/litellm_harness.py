#!/usr/bin/env python3
"""Run one check against a real LiteLLM 1.74.0.post2; used by test_callback_litellm.py.

Runs inside the pinned LiteLLM venv (the test suite's cached one), not in the
test venv:  ``PYTHONPATH=tests <litellm python> litellm_harness.py SCENARIO < input.json``.
It loads the deployed callback the way the proxy does (which also applies
the response-side patches unless CCQ_LITELLM_PATCHES=0), runs the scenario
and prints one line ``CCQ-RESULT <json>`` (LiteLLM prints other lines).

Usage: ``litellm_harness.py batch`` with a JSON list of [key, scenario,
input] on stdin answers {key: result} from one LiteLLM import (seconds each).

Scenarios:
  policy   the ParamPolicy derived from LiteLLM, and LiteLLM's own tables
  adapter  normalize each payload, then translate it with LiteLLM's
           Anthropic adapter exactly as /v1/messages does; also the raw one
  stream   N concurrent streamed tool calls through litellm.anthropic_messages
           against a local stub upstream sending content null or ""
  error    what litellm.anthropic_messages raises for an upstream 400
  hook     LiteLLM's own ProxyLogging.pre_call_hook with the callback
           registered, for several call_type values
Every server binds 127.0.0.1 on a free port.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from helpers.modules import CALLBACK_FILE, load_file, load_proxy_module

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
TOOL_ARGS = '{"file_path": "/tmp/a.txt", "limit": 5}'


def load_callbacks() -> Any:
    load_proxy_module("hook")  # the package it imports, without writing bytecode into the role's files
    return load_file(CALLBACK_FILE, "custom_callbacks")


# ------------------------------------------------------------------ stub upstream
class Stub(BaseHTTPRequestHandler):
    """OpenAI-compatible chat completions: a streamed tool call, or a 400."""

    mode = "null"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.mode == "400":
            body = json.dumps({"message": "body.foo: property 'body.foo' is unsupported",
                               "type": "invalid_request_error", "param": "validation_error",
                               "code": "wrong_api_format"}).encode()
            self.send_response(400)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        content = "" if self.mode == "empty" else None
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        call_id = f"call_{threading.get_ident()}_{time.monotonic_ns()}"
        pieces = [TOOL_ARGS[:10], TOOL_ARGS[10:25], TOOL_ARGS[25:]]
        deltas = [{"role": "assistant", "content": content,
                   "tool_calls": [{"index": 0, "id": call_id, "type": "function",
                                   "function": {"name": "Read", "arguments": ""}}]}]
        deltas += [{"content": content, "tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in pieces]
        for delta in deltas:
            self._chunk({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
            time.sleep(0.003)  # let concurrent streams interleave
        self._chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
        self._chunk({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _chunk(self, obj: dict[str, Any]) -> None:
        obj = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", **obj}
        self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
        self.wfile.flush()


def start_stub(mode: str) -> ThreadingHTTPServer:
    handler = type("StubMode", (Stub,), {"mode": mode})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def request_kwargs(server: ThreadingHTTPServer) -> dict[str, Any]:
    return {
        "model": "cerebras/qwen-3-coder-480b", "api_key": "test-key", "max_tokens": 64,
        "api_base": f"http://127.0.0.1:{server.server_address[1]}/v1",
        "messages": [{"role": "user", "content": "read /tmp/a.txt"}],
        "tools": [{"name": "Read", "description": "Read a file.",
                   "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}],
    }


# ------------------------------------------------------------------ scenarios
def scenario_policy(_input: Any) -> dict[str, Any]:
    from importlib.metadata import version

    import litellm

    cc = load_callbacks()
    policy = load_proxy_module("normalizer").derive_param_policy()
    return {
        "litellm_version": version("litellm"),
        "cerebras_supported": sorted(litellm.CerebrasConfig().get_supported_openai_params(model="qwen-3-coder-480b")),
        "supported": sorted(policy.supported),
        "checked": sorted(policy.checked),
        "internal": sorted(policy.internal),
        "instance_policy_equal": cc.proxy_handler_instance.policy == policy,
    }


def _translate(request: dict[str, Any]) -> dict[str, Any]:
    """What LiteLLM 1.74's /v1/messages path hands to litellm.acompletion."""
    from litellm.llms.anthropic.experimental_pass_through.adapters.handler import (
        LiteLLMMessagesToCompletionTransformationHandler as Handler,
    )

    named = ("max_tokens", "messages", "model", "metadata", "stop_sequences", "stream", "system",
             "temperature", "thinking", "tool_choice", "tools", "top_k", "top_p")
    args = {k: request.get(k) for k in named}
    extra = {k: v for k, v in request.items() if k not in named}
    try:
        kwargs = Handler._prepare_completion_kwargs(**args, extra_kwargs=extra)
    except Exception as exc:  # noqa: BLE001 - the adapter's own rejections (e.g. tool_choice none), reported
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"messages": kwargs["messages"], "tools": kwargs.get("tools"),
            "tool_choice": kwargs.get("tool_choice"), "keys": sorted(kwargs)}


def scenario_adapter(payloads: dict[str, Any]) -> dict[str, Any]:
    load_callbacks()
    normalizer = load_proxy_module("normalizer")
    policy = normalizer.derive_param_policy()
    out = {}
    for name, payload in payloads.items():
        normalized = normalizer.normalize_request(json.loads(json.dumps(payload)), policy, 16384)
        out[name] = {"normalized": _translate(normalized), "raw": _translate(json.loads(json.dumps(payload)))}
    return out


async def _one_stream(kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    import litellm

    response = await litellm.anthropic_messages(**kwargs, stream=True)
    events = []
    async for chunk in response:
        raw = chunk.decode() if isinstance(chunk, bytes) else str(chunk)
        events += [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ")]
        await asyncio.sleep(0)  # a proxy awaits the client socket between events
    return events


def scenario_stream(spec: dict[str, Any]) -> dict[str, Any]:
    load_callbacks()
    server = start_stub(spec["content_shape"])
    try:
        kwargs = request_kwargs(server)

        async def run_all() -> list[list[dict[str, Any]]]:
            return await asyncio.gather(*[_one_stream(kwargs) for _ in range(spec.get("concurrency", 1))])

        streams = asyncio.run(run_all())
    finally:
        server.shutdown()
    return {"streams": streams, "expected_input": json.loads(TOOL_ARGS)}


def scenario_error(_input: Any) -> dict[str, Any]:
    import litellm

    load_callbacks()
    server = start_stub("400")
    results = {}
    try:
        for stream in (False, True):
            try:
                asyncio.run(litellm.anthropic_messages(**request_kwargs(server), stream=stream))
                results[str(stream)] = {"raised": None}
            except Exception as exc:  # noqa: BLE001 - what LiteLLM raises is the result
                results[str(stream)] = {"raised": type(exc).__name__,
                                        "status_code": getattr(exc, "status_code", None),
                                        "type": getattr(exc, "type", None)}
    finally:
        server.shutdown()
    return results


def scenario_hook(spec: dict[str, Any]) -> dict[str, Any]:
    import litellm
    from litellm.caching.dual_cache import DualCache
    from litellm.proxy._types import UserAPIKeyAuth
    from litellm.proxy.utils import ProxyLogging

    cc = load_callbacks()
    litellm.callbacks = [cc.proxy_handler_instance]
    logging_obj = ProxyLogging(user_api_key_cache=DualCache())
    out = {}
    for call_type in spec["call_types"]:
        data = json.loads(json.dumps(spec["payload"]))
        result = asyncio.run(logging_obj.pre_call_hook(user_api_key_dict=UserAPIKeyAuth(), data=data,
                                                       call_type=call_type))
        out[call_type] = result
    return out


SCENARIOS = {"policy": scenario_policy, "adapter": scenario_adapter, "stream": scenario_stream,
             "error": scenario_error, "hook": scenario_hook}

def run_batch(jobs: list[list[Any]]) -> dict[str, Any]:
    return {key: SCENARIOS[scenario](data) for key, scenario, data in jobs}


if __name__ == "__main__":
    data = json.loads(sys.stdin.read() or "null")
    result = run_batch(data) if sys.argv[1] == "batch" else SCENARIOS[sys.argv[1]](data)
    sys.stdout.write("\nCCQ-RESULT " + json.dumps(result, default=str) + "\n")
