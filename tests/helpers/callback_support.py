"""Shared helpers for the callback tests: loading, payloads, policies, checks.

The callback is loaded from the very file the role deploys, the way LiteLLM loads
it (importlib.util.spec_from_file_location, not registered in sys.modules), so a
test also catches a module that only imports in pytest; its parts are the modules
of the ccq_proxy package it imports, from the role's files too.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from .modules import CALLBACK_FILE, load_file, load_proxy_module

REPO = Path(__file__).resolve().parents[2]
FIXTURE_DIR = REPO / "tests" / "fixtures" / "claude_code_requests"
BILLING_LINE = "x-anthropic-billing-header: cc_version=2.1.332.abc; cc_entrypoint=cli; cch=1a2b3;"
EPHEMERAL = {"type": "ephemeral"}


@functools.lru_cache(maxsize=1)
def load_callbacks() -> ModuleType:
    """The deployed custom_callbacks.py, loaded as LiteLLM's proxy loads it."""
    load_proxy_module("hook")  # the package it imports, without writing bytecode into the role's files
    return load_file(CALLBACK_FILE, "custom_callbacks")


@functools.lru_cache(maxsize=1)
def load_normalizer() -> ModuleType:
    """ccq_proxy.normalizer (the request side, items a-l)."""
    return load_proxy_module("normalizer")


@functools.lru_cache(maxsize=1)
def load_patches() -> ModuleType:
    """ccq_proxy.litellm_patches (the response side, items k-t); without LiteLLM only
    its plain-Python parts can run."""
    return load_proxy_module("litellm_patches")


def cerebras_policy(**overrides: Any) -> Any:
    """A stand-in for derive_param_policy() on LiteLLM 1.74.0.post2.

    ``supported`` is CerebrasConfig.get_supported_openai_params and
    ``checked`` LiteLLM's OpenAI-side parameter table, as 1.74.0.post2 derives
    them; test_callback_litellm.py proves the two equal the derived ones, so
    the plain-Python tests run on the same decisions as the proxy.
    """
    fields = {
        "supported": frozenset({
            "max_tokens", "max_completion_tokens", "response_format", "seed", "stop",
            "stream", "temperature", "top_p", "tool_choice", "tools", "user",
        }),
        "checked": frozenset({
            "audio", "frequency_penalty", "function_call", "functions", "logit_bias",
            "logprobs", "max_completion_tokens", "max_tokens", "modalities", "n",
            "parallel_tool_calls", "prediction", "presence_penalty", "reasoning_effort",
            "response_format", "seed", "stop", "stream", "stream_options", "temperature",
            "thinking", "tool_choice", "tools", "top_logprobs", "top_p", "user",
            "web_search_options",
        }),
        # A subset of LiteLLM's own keys: those the proxy puts into a
        # /v1/messages request before the hook runs.
        "internal": frozenset({
            "litellm_metadata", "proxy_server_request", "litellm_call_id", "metadata",
            "api_key", "api_base", "timeout", "headers", "extra_headers",
        }),
    }
    fields.update(overrides)
    return load_normalizer().ParamPolicy(**fields)


def normalize(data: Any, ceiling: int = 16384, policy: Any = None, takes_images: bool = False) -> Any:
    """normalize_request with the 1.74 stand-in policy (a text-only model unless told)."""
    return load_normalizer().normalize_request(data, policy or cerebras_policy(), ceiling, takes_images)


# --------------------------------------------------------------------------
# Claude Code-shaped payloads (shape taken from Claude Code 2.1.332 captures)
# --------------------------------------------------------------------------

def tool_def(name: str, description: str = "Does a thing.", **extra: Any) -> dict[str, Any]:
    """A Claude Code tool definition with a small JSON schema."""
    return {
        "name": name,
        "description": description,
        "input_schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {"path": {"type": "string", "description": "A path."}},
            "required": ["path"],
            "additionalProperties": False,
        },
        **extra,
    }


def text(value: str, **extra: Any) -> dict[str, Any]:
    return {"type": "text", "text": value, **extra}


def tool_use(tool_id: str, name: str = "Read", **input_: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": input_ or {"path": "a.txt"}}


def tool_result(tool_id: str, content: Any = "ok", **extra: Any) -> dict[str, Any]:
    block = {"type": "tool_result", "tool_use_id": tool_id, **extra}
    if content is not None:
        block["content"] = content
    return block


def claude_code_request(*, stream: bool = True) -> dict[str, Any]:
    """One request carrying everything Claude Code 2.x sends that needs fixing."""
    return {
        "model": "qwen-3-coder-480b",
        "max_tokens": 32000,
        "stream": stream,
        "thinking": {"type": "adaptive", "display": "updates"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "metadata": {"user_id": "user_abc_account__session_0000"},
        "system": [
            text(BILLING_LINE),
            text("You are a Claude agent, built on Anthropic's Claude Agent SDK.", cache_control=EPHEMERAL),
            text("\nYou are an agent working with the user.", cache_control=EPHEMERAL),
        ],
        "messages": [
            {"role": "user", "content": [
                text("<system-reminder>\nAttribution guidance.\n</system-reminder>"),
                text("Use the Agent tool once, then say done."),
            ]},
            {"role": "system",
             "content": [text("# Environment\nPrimary working directory: /w", cache_control=EPHEMERAL)]},
            {"role": "assistant", "content": [
                text("Delegating."),
                tool_use("toolu_agent1", "Agent", prompt="probe", subagent_type="general-purpose"),
            ]},
            {"role": "user", "content": [
                tool_result("toolu_agent1", [text("[Subagent hand-back] pong"), text("agentId: a1")],
                            cache_control=EPHEMERAL),
                text("<system-reminder>Todo list is empty.</system-reminder>"),
            ]},
            {"role": "system", "content": "The following deferred tools are now available via ToolSearch: WebFetch"},
            {"role": "assistant", "content": [tool_use("toolu_bash1", "Bash", command="true")]},
            {"role": "user", "content": [tool_result("toolu_bash1", "")]},
        ],
        "tools": [
            tool_def("Agent"),
            tool_def("Bash", cache_control=EPHEMERAL),
            tool_def("ToolSearch"),
            tool_def("DeferredToolPlaceholder", defer_loading=True),
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 8},
        ],
    }


def full_size_request(tools: int = 24, target_bytes: int = 78_000) -> dict[str, Any]:
    """A full-size Claude Code request (about 78 KB, 24 tools) for the benchmark.

    Built from the captured fixtures when they exist (their largest request,
    topped up to 24 tools), else from claude_code_request().
    """
    base = max(fixture_requests().values(), key=lambda b: len(json.dumps(b)), default=None)
    body = copy.deepcopy(base) if base is not None else claude_code_request()
    body["tools"] = list(body.get("tools", []))
    seen = {t.get("name") for t in body["tools"]}
    prose = "Reads a file from the local filesystem. The path must be absolute."
    i = 0
    while len(body["tools"]) < tools:
        name = f"Tool{i}"
        i += 1
        if name not in seen:
            body["tools"].append(tool_def(name, description=prose))
    turn = 0
    while len(json.dumps(body)) < target_bytes:
        tid = f"toolu_pad{turn}"
        body["messages"].append({"role": "assistant", "content": [text("Reading."), tool_use(tid)]})
        body["messages"].append({"role": "user", "content": [
            tool_result(tid, [text("line of file content\n" * 40), text("(end of file)")], cache_control=EPHEMERAL),
            text("<system-reminder>keep going</system-reminder>"),
        ]})
        turn += 1
    return body


@functools.lru_cache(maxsize=1)
def _fixture_cache() -> tuple[tuple[str, str], ...]:
    if not FIXTURE_DIR.is_dir():
        return ()
    out = []
    for path in sorted(FIXTURE_DIR.glob("*.json")):
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(body, dict) and isinstance(body.get("messages"), list):
            out.append((path.name, json.dumps(body)))
    return tuple(out)


def fixture_requests() -> dict[str, dict[str, Any]]:
    """Captured Claude Code request bodies (tests/fixtures/claude_code_requests)."""
    return {name: json.loads(raw) for name, raw in _fixture_cache()}


def claude_code_payloads() -> dict[str, dict[str, Any]]:
    """Captured requests when present, plus the built ones (always)."""
    payloads = {f"fixture:{k}": v for k, v in fixture_requests().items()}
    payloads["built:streaming"] = claude_code_request(stream=True)
    payloads["built:non-streaming"] = claude_code_request(stream=False)
    return payloads


# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------

def walk_blocks(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every structural dict of a request: system blocks, messages, blocks, tools."""
    system = body.get("system")
    if isinstance(system, list):
        yield from (b for b in system if isinstance(b, dict))
    for msg in body.get("messages") or []:
        if not isinstance(msg, dict):
            continue
        yield msg
        content = msg.get("content")
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict):
                yield block
                inner = block.get("content")
                if isinstance(inner, list):
                    yield from (b for b in inner if isinstance(b, dict))
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            yield tool
    if isinstance(body.get("tool_choice"), dict):
        yield body["tool_choice"]


def text_only_lists(body: dict[str, Any]) -> list[Any]:
    """Content lists that hold nothing but text blocks (should be strings)."""
    found = []
    for msg in body.get("messages") or []:
        lists = [msg.get("content")]
        lists += [b.get("content") for b in msg.get("content") or [] if isinstance(b, dict)] \
            if isinstance(msg.get("content"), list) else []
        for content in lists:
            if isinstance(content, list) and all(
                    isinstance(b, dict) and b.get("type") == "text" for b in content):
                found.append(content)
    return found


def tool_pairs(body: dict[str, Any]) -> set[tuple[str, str]]:
    """(tool_use id, tool name) of every tool_use answered by a tool_result."""
    uses: dict[str, str] = {}
    answered: set[str] = set()
    for msg in body.get("messages") or []:
        content = msg.get("content") if isinstance(msg, dict) else None
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_use" and msg.get("role") == "assistant":
                uses[block.get("id")] = block.get("name")
            elif block.get("type") == "tool_result" and msg.get("role") == "user":
                answered.add(block.get("tool_use_id"))
    return {(i, n) for i, n in uses.items() if i in answered}


def openai_rule_violations(messages: list[dict[str, Any]]) -> list[str]:
    """What OpenAI's chat API rejects in a message list (the rules ccq must meet).

    Every assistant message with tool_calls is followed directly by one tool
    message per call id; a tool message answers a pending call; tool_call ids
    are unique; system and tool content are strings.
    """
    problems: list[str] = []
    pending: list[str] = []
    seen: set[str] = set()
    for i, msg in enumerate(messages):
        role = msg.get("role")
        if role == "tool":
            call_id = msg.get("tool_call_id")
            if call_id not in pending:
                problems.append(f"[{i}] tool message answers no pending call ({call_id})")
            else:
                pending.remove(call_id)
            if not isinstance(msg.get("content"), str):
                problems.append(f"[{i}] tool content is not a string")
            continue
        if pending:
            problems.append(f"[{i}] {role} message before tool results for {pending}")
            pending = []
        if role == "system" and not isinstance(msg.get("content"), str):
            problems.append(f"[{i}] system content is not a string")
        for call in msg.get("tool_calls") or []:
            if call["id"] in seen:
                problems.append(f"[{i}] duplicate tool_call id {call['id']}")
            seen.add(call["id"])
            pending.append(call["id"])
    if pending:
        problems.append(f"unanswered tool calls at the end: {pending}")
    return problems


def litellm_python_from_env() -> str | None:
    """CCQ_LITELLM_PYTHON: a python with litellm==1.74.0.post2 (make test's cached venv)."""
    value = os.environ.get("CCQ_LITELLM_PYTHON", "").strip()
    return value or None
