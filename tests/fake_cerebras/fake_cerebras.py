#!/usr/bin/env python3
"""A stand-in for the Cerebras inference API (https://api.cerebras.ai/v1).

Stdlib only, one file, Python >= 3.11, so it runs unchanged on the host, in
the Debian 12 test target as a systemd service (/usr/bin/python3) and in the
benchmarks.  It speaks the OpenAI-compatible dialect that Cerebras serves:

* ``POST /v1/chat/completions``: streaming (SSE ``data: {chunk}`` events, then
  ``data: [DONE]``) and non-streaming, with Cerebras' response shape (``id``,
  ``choices``, ``created``, ``model``, ``system_fingerprint``, ``object``,
  ``usage`` and ``time_info``).
* ``GET /v1/models`` and ``GET /v1/models/{id}``: OpenAI list shape.
* ``GET /health``: 200, for fixtures and systemd checks.

Errors use Cerebras' *flat* error body, not OpenAI's ``{"error": {...}}``
wrapper, because that is what the live API returns (for example
``{"message":"Wrong API Key","type":"invalid_request_error","param":"api_key",
"code":"wrong_api_key"}``); clients and LiteLLM must cope with that shape.

Scripted behaviour (what a test can rely on):

* A request that carries ``tools`` and whose last message is not a ``tool``
  result is answered with a call to the first tool named in
  ``--tool-preference`` that the request offers.  Agent/Task are never called
  once any message contains :data:`SUBAGENT_MARKER`, so a subagent's own
  conversation does not recurse.  No preferred tool offered -> a text answer.
* Otherwise the answer is text: ``pong`` when the marker is in the
  conversation, else ``ccq-fake: done``.
* ``--strict`` rejects with 400 what a strict OpenAI-compatible server
  rejects (see :func:`validate_strict`); without it any JSON object with a
  ``messages`` list is accepted.  Image parts (``image_url`` with a
  ``data:image/<png|jpeg|gif|webp>;base64,...`` URL) are accepted only in
  user messages to ``--vision-models``: Cerebras serves text models, and a
  malformed data URL (LiteLLM 1.74 sends ``data:image;base64,{'type': ...``)
  must fail here as it fails there.
* ``usage.prompt_tokens`` is :func:`prompt_tokens` of the request:
  ``ceil(n / 4)``, at least 1, where ``n`` is the length in UTF-8 bytes of
  the compact JSON (``separators=(",", ":")``, ``ensure_ascii=False``) of
  ``messages`` plus that of ``tools`` (when present and not empty).  The
  same number is reported in streamed and non-streamed usage, checked
  against ``--context-window`` and charged to ``--tokens-per-minute``:
  Claude Code decides when to compact from the usage it is told.
  ``usage.prompt_tokens_details.cached_tokens`` (part of prompt_tokens) is 0,
  a queued answer's ``cached_tokens``, or with ``--prefix-cache``
  :class:`PrefixCache`'s model of Cerebras' prompt prefix cache: the longest
  common prefix with the previous request's tools + messages, in tokens.  The
  requested output (:func:`requested_output`) is ``max_completion_tokens``,
  else ``max_tokens``, else 0.
* ``--context-window N`` (default 0 = off): a request whose prompt tokens
  plus requested output exceed N gets Cerebras' 400
  ``{"message": "Please reduce the length of the messages or completion.
  Current length is <prompt+output> while limit is <N>", "type":
  "invalid_request_error", "param": "messages", "code":
  "context_length_exceeded"}`` (Claude Code compacts on that message).
* ``--tokens-per-minute N`` (default 0 = off), ``--quota-window-seconds S``
  (default 60), ``--requests-per-minute N`` (default 0 = no limit; the free
  tier's 30) and ``--requests-per-day N`` (default 14400): Cerebras'
  token quota in fixed windows (window k covers ``[t0 + k*S, t0 +
  (k+1)*S)``, t0 = server start; days likewise with 86400 s).  A request is
  admitted only if the window's used tokens plus its prompt tokens plus its
  requested output fit in N, and that much is reserved; when its answer is
  built the reservation is replaced by the actual prompt + completion
  tokens (in the window it was reserved in).  Otherwise, or when the day's
  requests are spent, or the window's requests with
  ``--requests-per-minute``, 429 with Cerebras' flat body
  (:data:`ERROR_DEFAULTS`; a spent day says "Requests per day limit
  exceeded", a spent minute "Requests per minute limit exceeded").  With the quota on, every chat answer the fake itself
  builds (200s streamed or not, queued completions and SSE, the quota's
  429, the context-window 400) carries Cerebras' ``x-ratelimit-*`` headers
  (:meth:`TokenQuota.headers`): remaining is after this request's charge,
  the resets are seconds (2 decimals) until the window / day turns.  A
  queued ``error`` entry is a scripted answer: it keeps its own headers and
  charges no tokens (its request still counts for the day).
* Order of checks on ``POST /v1/chat/completions``: auth, ``--strict``
  validation, served model, context window (400), quota (429), then the
  queue or the scripted answer.  A request refused by any check takes no
  queue entry.

Streamed tool calls come in Cerebras' shape by default: each call WHOLE in
one delta (``index``, ``id``, ``type``, ``function.name`` and the complete
``function.arguments``), usage and ``time_info`` on the finish chunk.
``--tool-arg-chunks N`` (N > 1) switches to OpenAI's incremental shape (a
header delta with ``arguments: ""``, then N argument pieces), because a relay
must cope with both and they break different code paths.

Scripted-response queue (``/_fake/queue``, no auth): the next upstream
answers can be anything the real API can send, also when the fake runs as a
systemd service in a test VM and a test cannot restart it with other flags.

* ``POST /_fake/queue`` ``{"responses": [R, ...]}`` appends (FIFO, thread
  safe; an invalid R rejects the whole POST with 400) -> ``{"queued": n}``;
  ``GET`` -> ``{"queued": n}``; ``DELETE`` empties it.
* Each ``POST /v1/chat/completions`` is checked as usual (auth, ``--strict``
  validation, served model: a bad request is still rejected, and does not
  consume an entry); a valid one then pops the first R and gets it instead
  of the scripted answer.  The request log line is written as usual.
* R kinds (see :func:`check_queued`):

  - ``{"kind": "error", "status": 429, "body": {...}, "headers": {...},
    "rate_limit_headers": true}``: that status; ``body`` defaults to
    Cerebras' flat error for the status (:data:`ERROR_DEFAULTS`); a 429 also
    carries Cerebras' ``x-ratelimit-*`` headers unless
    ``rate_limit_headers`` is false; ``headers`` add or override.
  - ``{"kind": "sse", "file": "<name>" | "body": "<raw SSE>", "break":
    "rst" | "fin", "break_after_events": N}``: the bytes verbatim (``{model}``
    replaced by the request's model), one SSE event per chunk and send().
    ``file`` is looked up in tests/fixtures/upstream_streams/ or is absolute.
    ``break``: after N events (default all) reset the connection ("rst") or
    end it without the terminating zero-length chunk ("fin").
  - ``{"kind": "completion", "message": {...}, "finish_reason": "..."}``: a
    chat.completion with that message, or, for ``stream: true``, its content
    as text deltas, each tool call in one delta, then the finish chunk.
  - ``{"kind": "tool_calls", "calls": [{"name", "arguments", "id"?}],
    "text": "..."}``: shorthand for a completion calling those tools at once.
  - A ``completion`` or ``tool_calls`` R may carry ``"cached_tokens": N``: the
    usage's ``prompt_tokens_details.cached_tokens`` (default: the prefix model).
  - A ``completion``, ``tool_calls`` or ``sse`` R may carry ``"chunk_delay":
    S`` (seconds, >= 0): a slow answer.  Streamed, S passes before each
    chunk after the first; not streamed, the whole answer is sent after S
    times its text tokens plus tool calls (the time its stream would take).
    Either way the fake notices a client that closes the connection
    meanwhile at once (``/_fake/answers``).
  - Any R may carry ``"match": "text"`` (only a request whose last message
    contains the text takes it) and ``"tools": true`` (only one that offers
    tools): a real client's side requests pass it by.  An ``sse`` R waits for
    a streaming request.

Counters (``/_fake/stats``, no auth): ``GET`` -> ``{"requests": chat requests,
"by_status": {"200": n, "400": n, ...}, "context_length_exceeded": n,
"rate_limited": n (the quota's 429s, not queued ones), "max_prompt_tokens":
largest prompt_tokens of an admitted request, "tokens_charged": prompt +
completion tokens of the answered requests (counted with the quota off
too), "reads_issued": n, "summaries_asked": n}``; ``DELETE`` resets them
(not the quota).

A long session (``--read-files A,B,...``): every answer to a request that
offers a ``Read`` tool calls Read on the next file of the list (queued
entries still come first), or on the next N files at once with
``--reads-per-answer N`` (parallel tool calls, as gpt-oss makes them); once
the list is done the answer is text.  A
Claude Code compaction request (its last message asks to "create a detailed
summary") is answered with a short summary, so the session goes on where it
was; the counters say how many reads were issued and summaries asked.

What became of each answer (``/_fake/answers``, no auth): ``GET`` ->
``{"answers": [{"stream", "model", "started", "ended", "chunks_written",
"outcome"}, ...]}``, oldest first, one per 200 chat answer (streamed,
replayed or not); ``DELETE`` empties it.  ``started``/``ended`` are
``time.time()`` seconds; ``outcome`` is null while the answer is being
written, then ``"finished"``, or ``"client_closed"`` when the client closed
its connection first (a write failed, or the fake saw the connection's end
while pacing chunks or generating a slow answer: ``ended`` is then when it
saw that).  ``chunks_written``: SSE chunks sent (a non-streamed body is 1).

The request log (``--request-log``) gets one JSON line per request:
``{"ts", "method", "path", "status", "bearer", "body"}``.  ``bearer`` only
says whether a bearer token was present: the key itself is never written.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import http
import json
import os
import re
import select
import signal
import socket
import struct
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# The string the scripted Agent/Task call carries in its prompt.  Its presence
# in a conversation marks that conversation as the subagent's own (or as the
# main conversation after the subagent ran), so the fake stops calling Agent.
SUBAGENT_MARKER = "ccq-subagent-probe"

DEFAULT_MODELS = (
    # The blog recipe's model: retired by Cerebras, still served here by
    # default so the recipe's configuration works against the fake.
    "qwen-3-coder-480b",
    "gpt-oss-120b",
    "qwen-3.8-27b",
    "gemma-4-31b",
    "qwen-3-235b-a22b-instruct-2507",
    "zai-glm-4.6",
    "zai-glm-4.7",
    "llama3.1-8b",
)

# Top-level chat-completions fields Cerebras documents (its API reference
# plus its OpenAI-compatibility notes).  A strict server answers anything else
# with 400, as Cerebras does: "body.X: property 'body.X' is unsupported".
SUPPORTED_TOP_LEVEL_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "min_tokens",
        "response_format",
        "seed",
        "stop",
        "stream",
        "stream_options",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "user",
        "logprobs",
        "top_logprobs",
        "reasoning_effort",
        "clear_thinking",
        "prediction",
        "service_tier",
        "logit_bias",
    }
)

# Keys OpenAI's schema allows on each message role (anything else, such as
# Anthropic's cache_control, is "Additional properties are not allowed").
ALLOWED_MESSAGE_KEYS = {
    "system": frozenset({"role", "content", "name"}),
    "developer": frozenset({"role", "content", "name"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset(
        {"role", "content", "name", "tool_calls", "refusal", "reasoning", "function_call"}
    ),
    "tool": frozenset({"role", "content", "tool_call_id"}),
}
TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
ALLOWED_TOOL_KEYS = frozenset({"type", "function"})
ALLOWED_FUNCTION_KEYS = frozenset({"name", "description", "parameters", "strict"})
ALLOWED_TEXT_PART_KEYS = frozenset({"type", "text"})
ALLOWED_IMAGE_PART_KEYS = frozenset({"type", "image_url"})
ALLOWED_IMAGE_URL_KEYS = frozenset({"url", "detail"})
# What a vision model accepts as an image: an inline base64 data URL of a
# common raster format (no remote URLs: the fake never fetches anything).
IMAGE_DATA_URL_RE = re.compile(r"data:image/(?:png|jpeg|gif|webp);base64,([A-Za-z0-9+/]+={0,2})")

# Where {"kind": "sse", "file": ...} entries of the queue are looked up.
UPSTREAM_STREAMS_DIR = Path(__file__).resolve().parents[1] / "fixtures/upstream_streams"

# Cerebras' flat error body per status for queued errors without a body:
# (message, type, param, code).  404's message names the request's model.
ERROR_DEFAULTS: dict[int, tuple[str, str, str | None, str | None]] = {
    400: ("Invalid request: the request body could not be processed.",
          "invalid_request_error", None, "wrong_api_format"),
    401: ("Wrong API Key", "invalid_request_error", "api_key", "wrong_api_key"),
    402: ("Payment required: your organization has no remaining credits.",
          "payment_required_error", None, "payment_required"),
    403: ("You do not have permission to access this resource.",
          "permission_denied_error", None, "permission_denied"),
    404: ("Model {model} does not exist or you do not have access to it.",
          "not_found_error", "model", "model_not_found"),
    413: ("Request too large: the request exceeds the maximum allowed size.",
          "invalid_request_error", "messages", "request_too_large"),
    422: ("Unprocessable request: the request parameters are invalid.",
          "invalid_request_error", None, "unprocessable_entity"),
    429: ("Tokens per minute limit exceeded - too many tokens processed.",
          "too_many_requests_error", "quota", "token_quota_exceeded"),
    500: ("Internal server error. Please try again later.",
          "internal_server_error", None, "internal_server_error"),
    503: ("We're experiencing high traffic right now! Please try again soon.",
          "service_unavailable", None, "service_unavailable"),
}
# The rate-limit headers Cerebras sends; on a 429 the minute's tokens are
# spent and the reset is seconds (a float) until the window turns.
RATE_LIMIT_HEADERS_429 = {
    "x-ratelimit-limit-tokens-minute": "60000",
    "x-ratelimit-remaining-tokens-minute": "0",
    "x-ratelimit-reset-tokens-minute": "33.5",
    "x-ratelimit-limit-requests-day": "14400",
    "x-ratelimit-remaining-requests-day": "14321",
    "x-ratelimit-reset-requests-day": "51234.5",
}
QUEUE_KINDS = frozenset({"error", "sse", "completion", "tool_calls"})
# Cerebras' 400 for a prompt plus requested output over the model's window;
# Claude Code recognizes "Please reduce the length of the messages" as an
# overflow and compacts.
CONTEXT_LENGTH_MESSAGE = ("Please reduce the length of the messages or completion. "
                          "Current length is {length} while limit is {limit}")
# The 429 when --requests-per-day is spent (the token one is ERROR_DEFAULTS[429]).
REQUESTS_PER_DAY_MESSAGE = "Requests per day limit exceeded - too many requests sent."
REQUESTS_PER_MINUTE_MESSAGE = "Requests per minute limit exceeded - too many requests sent."
DAY_SECONDS = 86400

# Arguments the fake sends for tools it knows; other tools get minimal
# arguments built from their JSON schema (see minimal_arguments).
KNOWN_TOOL_ARGUMENTS: dict[str, dict[str, Any]] = {
    "Agent": {
        "description": "ccq subagent probe",
        "prompt": f"{SUBAGENT_MARKER}: reply with the single word pong",
        "subagent_type": "general-purpose",
        # Claude Code 2.x runs agents in the background by default and then
        # reports through a later task-notification turn; in the foreground
        # the subagent's report comes back as this call's tool_result.
        # Dropped for versions whose schema lacks it (see tool_arguments).
        "run_in_background": False,
    },
    "Bash": {"command": "echo ccq-fake", "description": "Print a marker"},
}
KNOWN_TOOL_ARGUMENTS["Task"] = KNOWN_TOOL_ARGUMENTS["Agent"]
AGENT_TOOLS = frozenset({"Agent", "Task"})

TEXT_ANSWER = "ccq-fake: done"
SUBAGENT_TEXT_ANSWER = "pong"


class RequestError(Exception):
    """A 4xx the fake answers with, in Cerebras' flat error shape."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error",
                 param: str | None = "validation_error", code: str | None = "wrong_api_format") -> None:
        super().__init__(message)
        self.status = status
        self.body = {"message": message, "type": type_, "param": param, "code": code}


def bad_request(message: str, param: str | None = "validation_error") -> RequestError:
    """A 400 shaped like Cerebras' validation errors (code wrong_api_format)."""
    return RequestError(400, message, param=param)


@dataclass(frozen=True)
class Config:
    """Everything the command line sets; shared read-only by all handlers."""

    models: tuple[str, ...] = DEFAULT_MODELS
    api_key: str | None = None
    tool_preference: tuple[str, ...] = ("Agent", "Task")
    stream_tokens: int = 0
    tokens_per_second: float = 0.0
    empty_content_shape: str = "null"
    tool_arg_chunks: int = 1
    strict: bool = False
    vision_models: tuple[str, ...] = ()
    no_auth_status: int = 401
    context_window: int = 0
    tokens_per_minute: int = 0
    quota_window_seconds: float = 60.0
    requests_per_day: int = 14400
    read_files: tuple[str, ...] = ()
    reads_per_answer: int = 1
    requests_per_minute: int = 0
    prefix_cache: bool = False
    fingerprint: str = field(default_factory=lambda: "fp_" + uuid.uuid4().hex[:20])


# --------------------------------------------------------------------------
# Strict validation: what a strict OpenAI-compatible server rejects.
# --------------------------------------------------------------------------

def _check_image_part(part: dict[str, Any], where: str) -> None:
    """An OpenAI image part whose URL is a base64 data URL that decodes.

    Checked strictly because LiteLLM 1.74 turns Anthropic image blocks into
    ``data:image;base64,{'type': 'base64', ...}`` (a dict's repr), which a
    real vision endpoint rejects: a fake that let it through would hide that.
    """
    extra = set(part) - ALLOWED_IMAGE_PART_KEYS
    if extra:
        raise bad_request(f"{where}: additional properties are not allowed "
                          f"({', '.join(sorted(extra))})", where)
    image = part.get("image_url")
    if not isinstance(image, dict) or not isinstance(image.get("url"), str):
        raise bad_request(f"{where}.image_url.url: field required (string)", f"{where}.image_url")
    extra = set(image) - ALLOWED_IMAGE_URL_KEYS
    if extra:
        raise bad_request(f"{where}.image_url: additional properties are not allowed "
                          f"({', '.join(sorted(extra))})", f"{where}.image_url")
    url = image["url"]
    match = IMAGE_DATA_URL_RE.fullmatch(url)
    try:
        valid = match is not None and bool(base64.b64decode(match.group(1), validate=True))
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        raise bad_request(f"{where}.image_url.url: must be a data URL "
                          "'data:image/<png|jpeg|gif|webp>;base64,<base64 data>'; "
                          f"got {url[:60]!r}", f"{where}.image_url.url")


def _check_text_parts(parts: list[Any], where: str, images: bool = False) -> None:
    """A content list may only hold OpenAI text parts ({type: text, text}).

    Cerebras serves text models: image or any other part type is rejected,
    and so is any extra key on a part (Anthropic's cache_control).  With
    ``images`` (a user message to a --vision-models model) image_url parts
    with a valid data URL are accepted too.
    """
    if not parts:
        raise bad_request(f"{where}: content list must not be empty", where)
    for j, part in enumerate(parts):
        if images and isinstance(part, dict) and part.get("type") == "image_url":
            _check_image_part(part, f"{where}[{j}]")
            continue
        if not isinstance(part, dict) or part.get("type") != "text":
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            only = "text and image_url parts are" if images else "only text parts are"
            raise bad_request(f"{where}[{j}]: content part type {kind!r} is not supported; "
                              f"{only}", f"{where}[{j}]")
        if not isinstance(part.get("text"), str):
            raise bad_request(f"{where}[{j}].text: field required (string)", f"{where}[{j}].text")
        extra = set(part) - ALLOWED_TEXT_PART_KEYS
        if extra:
            raise bad_request(f"{where}[{j}]: additional properties are not allowed "
                              f"({', '.join(sorted(extra))})", f"{where}[{j}]")


def _check_content(msg: dict[str, Any], role: str, where: str, vision: bool = False) -> None:
    """Content rules per role (OpenAI's, plus Cerebras' "system as string").

    Images only ever in user messages of a vision model: tool results must
    be strings, and assistant turns are the model's own text.
    """
    content = msg.get("content")
    if role == "assistant":
        if content is None:
            if not msg.get("tool_calls"):
                raise bad_request(f"{where}.content: required unless tool_calls is set",
                                  f"{where}.content")
            return
    elif "content" not in msg or content is None:
        raise bad_request(f"{where}.content: field required", f"{where}.content")
    if isinstance(content, str):
        return
    if isinstance(content, list):
        if role in ("system", "developer", "tool"):
            # Cerebras: "System prompts must be passed to the messages
            # parameter as a string"; tool results likewise.
            raise bad_request(f"{where}.content: must be a string for role {role!r}, got a list",
                              f"{where}.content")
        _check_text_parts(content, f"{where}.content", images=vision and role == "user")
        return
    raise bad_request(f"{where}.content: must be a string or a list of text parts",
                      f"{where}.content")


def _check_tool_calls(tool_calls: Any, where: str, seen_ids: set[str]) -> list[str]:
    """Validate an assistant's tool_calls; return their ids in order."""
    if not isinstance(tool_calls, list) or not tool_calls:
        raise bad_request(f"{where}.tool_calls: must be a non-empty list", f"{where}.tool_calls")
    ids = []
    for k, call in enumerate(tool_calls):
        w = f"{where}.tool_calls[{k}]"
        if not isinstance(call, dict):
            raise bad_request(f"{w}: must be an object", w)
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            raise bad_request(f"{w}.id: field required", f"{w}.id")
        if call_id in seen_ids:
            raise bad_request(f"{w}.id: duplicate tool_call id {call_id!r}", f"{w}.id")
        seen_ids.add(call_id)
        if call.get("type") != "function":
            raise bad_request(f"{w}.type: must be 'function'", f"{w}.type")
        fn = call.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise bad_request(f"{w}.function.name: field required", f"{w}.function")
        if not isinstance(fn.get("arguments"), str):
            raise bad_request(f"{w}.function.arguments: must be a JSON string", f"{w}.function")
        extra = set(call) - {"id", "type", "function", "index"}
        if extra:
            raise bad_request(f"{w}: additional properties are not allowed "
                              f"({', '.join(sorted(extra))})", w)
        ids.append(call_id)
    return ids


def _check_messages(messages: Any, vision: bool = False) -> None:
    """OpenAI's conversation rules (``vision``: image parts allowed for users).

    * Every assistant message with tool_calls must be followed directly by
      one ``tool`` message per call id (OpenAI: "An assistant message with
      'tool_calls' must be followed by tool messages responding to each
      'tool_call_id'").  A user/system/assistant message in between, or the
      end of the conversation, leaves calls unanswered -> 400.
    * A ``tool`` message must answer a pending call of the assistant message
      right before it (OpenAI: "messages with role 'tool' must be a response
      to a preceeding message with 'tool_calls'").
    * tool_call ids are unique across the conversation.
    * ``system`` messages after other messages are accepted: OpenAI's API
      accepts them anywhere (LiteLLM dropping them is a different problem).
    """
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages: field required (a non-empty list)", "messages")
    seen_ids: set[str] = set()
    pending: list[str] = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise bad_request(f"{where}: must be an object", where)
        role = msg.get("role")
        if role not in ALLOWED_MESSAGE_KEYS:
            raise bad_request(f"{where}.role: unsupported role {role!r}", f"{where}.role")
        extra = set(msg) - ALLOWED_MESSAGE_KEYS[role]
        if extra:
            raise bad_request(f"{where}: additional properties are not allowed "
                              f"({', '.join(sorted(extra))})", where)
        if role == "tool":
            call_id = msg.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise bad_request(f"{where}.tool_call_id: field required", f"{where}.tool_call_id")
            if call_id not in pending:
                raise bad_request(
                    f"{where}: messages with role 'tool' must be a response to a preceding "
                    f"message with 'tool_calls' (no pending tool_call id {call_id!r})", where)
            pending.remove(call_id)
            _check_content(msg, role, where)
            continue
        if pending:
            raise bad_request(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(pending)}", f"messages[{i}]")
        _check_content(msg, role, where, vision)
        if "name" in msg and not isinstance(msg["name"], str):
            raise bad_request(f"{where}.name: must be a string", f"{where}.name")
        if role == "assistant" and msg.get("tool_calls") is not None:
            pending = _check_tool_calls(msg["tool_calls"], where, seen_ids)
    if pending:
        raise bad_request(
            "An assistant message with 'tool_calls' must be followed by tool messages "
            "responding to each 'tool_call_id'. The following tool_call_ids did not have "
            f"response messages: {', '.join(pending)}", "messages")


def _check_tools(tools: Any) -> set[str]:
    """OpenAI function-tool definitions; return the tool names."""
    if not isinstance(tools, list):
        raise bad_request("tools: must be a list", "tools")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise bad_request(f"{where}.type: must be 'function'", where)
        extra = set(tool) - ALLOWED_TOOL_KEYS
        if extra:
            raise bad_request(f"{where}: additional properties are not allowed "
                              f"({', '.join(sorted(extra))})", where)
        fn = tool.get("function")
        if not isinstance(fn, dict):
            raise bad_request(f"{where}.function: field required", f"{where}.function")
        name = fn.get("name")
        if not isinstance(name, str) or not TOOL_NAME_RE.match(name):
            raise bad_request(f"{where}.function.name: must match ^[a-zA-Z0-9_-]{{1,64}}$",
                              f"{where}.function.name")
        if name in names:
            raise bad_request(f"{where}.function.name: duplicate tool name {name!r}",
                              f"{where}.function.name")
        names.add(name)
        extra = set(fn) - ALLOWED_FUNCTION_KEYS
        if extra:
            raise bad_request(f"{where}.function: additional properties are not allowed "
                              f"({', '.join(sorted(extra))})", f"{where}.function")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise bad_request(f"{where}.function.parameters: must be an object",
                              f"{where}.function.parameters")
    return names


def _check_scalars(body: dict[str, Any]) -> None:
    """Type checks on the scalar parameters a client commonly sends."""
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise bad_request(f"{key}: must be a positive integer", key)
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise bad_request(f"{key}: must be a number", key)
    if "stream" in body and body["stream"] is not None and not isinstance(body["stream"], bool):
        raise bad_request("stream: must be a boolean", "stream")
    if body.get("stream_options") is not None and not body.get("stream"):
        # OpenAI: "The 'stream_options' parameter is only allowed when
        # 'stream' is enabled."
        raise bad_request("stream_options: only allowed when stream is enabled", "stream_options")
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str) and not (
            isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= 4):
        raise bad_request("stop: must be a string or a list of up to 4 strings", "stop")


def _check_tool_choice(choice: Any, names: set[str]) -> None:
    """tool_choice must be none/auto/required or name an offered function."""
    if choice is None or choice in ("none", "auto", "required"):
        return
    if (isinstance(choice, dict) and choice.get("type") == "function"
            and isinstance(choice.get("function"), dict)
            and choice["function"].get("name") in names):
        return
    raise bad_request("tool_choice: must be 'none', 'auto', 'required' or name an offered "
                      "function", "tool_choice")


def validate_strict(body: dict[str, Any], vision_models: Iterable[str] = ()) -> None:
    """Raise RequestError(400) for whatever a strict server rejects.

    ``vision_models``: models that take image parts in user messages.
    """
    unknown = sorted(set(body) - SUPPORTED_TOP_LEVEL_FIELDS)
    if unknown:
        raise bad_request("\n".join(f"body.{k}: property 'body.{k}' is unsupported"
                                    for k in unknown))
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise bad_request("model: field required", "model")
    _check_messages(body.get("messages"), body["model"] in set(vision_models))
    names = _check_tools(body["tools"]) if body.get("tools") is not None else set()
    if body.get("tool_choice") is not None:
        if not names:
            raise bad_request("tool_choice: only allowed when tools are specified", "tool_choice")
        _check_tool_choice(body["tool_choice"], names)
    _check_scalars(body)


def validate_lenient(body: Any) -> None:
    """Non-strict mode: only what the fake itself needs to answer."""
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object", None)
    if not isinstance(body.get("model"), str):
        raise bad_request("model: field required", "model")
    if not isinstance(body.get("messages"), list):
        raise bad_request("messages: field required", "messages")


# --------------------------------------------------------------------------
# The scripted "model".
# --------------------------------------------------------------------------

def conversation_has_marker(messages: list[Any]) -> bool:
    """True when any message mentions SUBAGENT_MARKER (in any field)."""
    return SUBAGENT_MARKER in json.dumps(messages, ensure_ascii=False)


def tool_names(tools: Any) -> list[str]:
    """The function names a request offers, in order (tolerates odd shapes)."""
    names = []
    for tool in tools if isinstance(tools, list) else []:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            names.append(fn["name"])
    return names


def tool_schema(tools: Any, name: str) -> dict[str, Any]:
    """The JSON schema of the named tool, or {}."""
    for tool in tools if isinstance(tools, list) else []:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(fn, dict) and fn.get("name") == name and isinstance(fn.get("parameters"), dict):
            return fn["parameters"]
    return {}


def _placeholder(schema: Any) -> Any:
    """A minimal value that satisfies a (simple) JSON schema."""
    if not isinstance(schema, dict):
        return "ccq"
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    return {
        "integer": 1,
        "number": 1,
        "boolean": False,
        "array": [],
        "object": minimal_arguments(schema),
        "null": None,
    }.get(kind, "ccq")


def minimal_arguments(schema: dict[str, Any]) -> dict[str, Any]:
    """Arguments holding only the schema's required properties."""
    props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    required = schema.get("required") if isinstance(schema.get("required"), list) else []
    return {name: _placeholder(props.get(name, {})) for name in required if isinstance(name, str)}


def tool_arguments(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Arguments for a call to ``name``: the table's, fitted to the schema.

    Keys the schema does not offer are dropped (Claude Code validates tool
    input, and older versions' Task tool has fewer properties), and required
    properties the table lacks get minimal values.
    """
    args = dict(KNOWN_TOOL_ARGUMENTS.get(name, {}))
    props = schema.get("properties") if isinstance(schema.get("properties"), dict) else None
    if props is not None and args:
        args = {k: v for k, v in args.items() if k in props}
    for key, value in minimal_arguments(schema).items():
        args.setdefault(key, value)
    return args


def choose_tool(body: dict[str, Any], preference: Iterable[str]) -> str | None:
    """The tool the scripted model calls now, or None for a text answer."""
    messages = body.get("messages") or []
    tools = body.get("tools")
    if not tools or not messages:
        return None
    last = messages[-1]
    if isinstance(last, dict) and last.get("role") == "tool":
        return None
    choice = body.get("tool_choice")
    if choice == "none":
        return None
    offered = tool_names(tools)
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        forced = choice["function"].get("name")
        if forced in offered:
            return forced
    marker = conversation_has_marker(messages)
    for name in preference:
        if name in offered and not (marker and name in AGENT_TOOLS):
            return name
    return None


def text_tokens(answer: str, count: int) -> list[str]:
    """Split the answer into ``count`` tokens (0 = natural word pieces).

    Longer than the answer: filler tokens " t<i>" follow, so every token is
    distinct and a relay that drops, repeats or reorders one is detectable.
    """
    pieces = re.findall(r"\s*[^\s:-]+[:-]?|\s+", answer) or [answer]
    if count <= 0:
        return pieces
    if count < len(pieces):
        return pieces[: count - 1] + ["".join(pieces[count - 1:])]
    return pieces + [f" t{i}" for i in range(len(pieces), count)]


def split_evenly(text: str, parts: int) -> list[str]:
    """Split a string into ``parts`` non-empty pieces (fewer if it is short)."""
    parts = max(1, min(parts, len(text)))
    size, rest = divmod(len(text), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < rest else 0)
        out.append(text[start:end])
        start = end
    return out


@dataclass(frozen=True)
class ToolCall:
    """One tool call of an answer; ``arguments`` is the JSON string sent."""

    id: str
    name: str
    arguments: str


def new_call_id() -> str:
    """A tool-call id in the usual call_<hex> form."""
    return "call_" + uuid.uuid4().hex[:24]


@dataclass
class Answer:
    """What the model replies: text tokens, then any tool calls.

    ``message``, when set, is sent verbatim as the non-streamed message (a
    queued completion); the stream is always built from tokens/tool_calls.
    """

    tokens: list[str]
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish: str | None = None
    message: dict[str, Any] | None = None
    cached_tokens: int = 0  # usage.prompt_tokens_details.cached_tokens

    @property
    def finish_reason(self) -> str:
        return self.finish or ("tool_calls" if self.tool_calls else "stop")

    @property
    def completion_tokens(self) -> int:
        return max(1, len(self.tokens) + sum(max(1, len(c.arguments) // 4) for c in self.tool_calls))


# Claude Code's auto-mode classifier (CLAUDE_CODE_AUTO_MODE_SERVER=0): a request with no tools
# whose system prompt casts the model as a security monitor. Stage 1 asks for "<block>yes" or
# "<block>no" and stops at "</block>" (stop sequences are not part of Cerebras' output); stage 2
# (no stop) thinks first, then answers "<block>...</block>" with a <reason> when it blocks.
CLASSIFIER_SYSTEM_TEXT = "You are a security monitor"
CLASSIFIER_STOP = "</block>"
# An action whose transcript carries this text is blocked (a test's way to see a refusal).
CLASSIFIER_BLOCK_MARKER = "ccq-fake-block"


def classifier_answer(body: dict[str, Any]) -> Answer | None:
    """The classifier's verdict, in its own format, or None when ``body`` is not a classifier request."""
    messages = body.get("messages") or []
    if body.get("tools") or not messages or not isinstance(messages[0], dict) or messages[0].get("role") != "system":
        return None
    if CLASSIFIER_SYSTEM_TEXT not in json.dumps(messages[0].get("content"), ensure_ascii=False):
        return None
    block = CLASSIFIER_BLOCK_MARKER in json.dumps(messages[1:], ensure_ascii=False)
    stop = body.get("stop")
    if CLASSIFIER_STOP in (stop if isinstance(stop, list) else [stop]):
        verdict = "<block>yes" if block else "<block>no"
    else:
        reason = "<reason>the transcript asks for a blocked action</reason>" if block else ""
        verdict = f"<thinking>checked the action</thinking><block>{'yes' if block else 'no'}</block>{reason}"
    return Answer(tokens=text_tokens(verdict, 0))


def make_answer(body: dict[str, Any], config: Config) -> Answer:
    """Decide the reply to a validated request."""
    verdict = classifier_answer(body)
    if verdict is not None:
        return verdict
    name = choose_tool(body, config.tool_preference)
    if name is not None:
        args = tool_arguments(name, tool_schema(body.get("tools"), name))
        return Answer(tokens=[], tool_calls=[ToolCall(new_call_id(), name, json.dumps(args))])
    marker = conversation_has_marker(body.get("messages") or [])
    text = SUBAGENT_TEXT_ANSWER if marker else TEXT_ANSWER
    return Answer(tokens=text_tokens(text, config.stream_tokens))


# --------------------------------------------------------------------------
# Response bodies.
# --------------------------------------------------------------------------

# One encoder for the process: json.dumps() with non-default arguments builds
# a new JSONEncoder on every call, which shows up at 100k chunks/s.
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _dumps(obj: Any) -> bytes:
    return _ENCODE(obj).encode()


def prompt_tokens(body: dict[str, Any]) -> int:
    """The prompt tokens of a request: reported, window-checked and charged.

    ``ceil(n / 4)``, at least 1, with ``n`` the UTF-8 length of the compact
    JSON (ensure_ascii=False) of ``messages`` plus that of ``tools`` when
    present and not empty.  Deterministic, so a test can compute it.
    """
    n = len(_dumps(body.get("messages")))
    tools = body.get("tools")
    if tools:
        n += len(_dumps(tools))
    return max(1, -(-n // 4))


def requested_output(body: dict[str, Any]) -> int:
    """The output a request asks room for: max_completion_tokens, else max_tokens, else 0."""
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


def context_length_exceeded(length: int, limit: int) -> RequestError:
    """Cerebras' 400 for a prompt plus requested output over the window."""
    return RequestError(400, CONTEXT_LENGTH_MESSAGE.format(length=length, limit=limit),
                        param="messages", code="context_length_exceeded")


def usage_block(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> dict[str, Any]:
    """Cerebras' usage object (``prompt_tokens`` includes the ``cached_tokens``)."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": min(cached_tokens, prompt_tokens)},
    }


class PrefixCache:
    """A deterministic model of Cerebras' prompt prefix cache, per model.

    The cached tokens of a request are the longest common prefix, in bytes, of
    its compact JSON ``tools`` + ``messages`` and the previous request's (to the
    same model), divided by 4 (the fake's bytes per token, see
    :func:`prompt_tokens`), at most its prompt tokens.  A conversation that grows
    turn by turn thus reports most of its prompt as cached, as the real API does.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, bytes] = {}

    @staticmethod
    def key(body: dict[str, Any]) -> bytes:
        tools = body.get("tools")
        return (_dumps(tools) if tools else b"") + _dumps(body.get("messages"))

    def cached_tokens(self, body: dict[str, Any], prompt: int) -> int:
        model, key = str(body.get("model")), self.key(body)
        with self._lock:
            last, self._last[model] = self._last.get(model, b""), key
        n = common_prefix_length(last, key)
        return min(prompt, n // 4)


def common_prefix_length(a: bytes, b: bytes) -> int:
    """Length of the longest common prefix of a and b (binary search over slices)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def time_info_block(started: float) -> dict[str, Any]:
    """Cerebras' time_info object (seconds)."""
    now = time.time()
    return {"queue_time": 0.000071, "prompt_time": 0.0008, "completion_time": max(0.0, now - started),
            "total_time": max(0.0, now - started), "created": now}


def completion_body(answer: Answer, model: str, config: Config, prompt_tokens: int,
                    started: float) -> dict[str, Any]:
    """A non-streaming chat.completion."""
    message: dict[str, Any] | None = answer.message
    if message is None:
        message = {"role": "assistant", "content": "".join(answer.tokens)}
        if answer.tool_calls:
            if not answer.tokens:
                message["content"] = "" if config.empty_content_shape == "empty" else None
            message["tool_calls"] = [{
                "id": c.id, "type": "function",
                "function": {"name": c.name, "arguments": c.arguments}} for c in answer.tool_calls]
    return {
        "id": "chatcmpl-" + str(uuid.uuid4()),
        "choices": [{"finish_reason": answer.finish_reason, "index": 0, "message": message}],
        "created": int(started),
        "model": model,
        "system_fingerprint": config.fingerprint,
        "object": "chat.completion",
        "usage": usage_block(prompt_tokens, answer.completion_tokens, answer.cached_tokens),
        "time_info": time_info_block(started),
    }


def _frame(event: bytes) -> bytes:
    """One SSE event as one HTTP/1.1 chunk (chunked transfer encoding)."""
    return b"%x\r\n%s\r\n" % (len(event), event)


class ChunkEncoder:
    """Builds the SSE frames of one streamed completion.

    The JSON around the delta is pre-encoded once per response, so a text
    token costs one json.dumps of the token and a few concatenations: the
    benchmarks need well over 100k chunks/s from this process.
    """

    def __init__(self, model: str, config: Config, started: float) -> None:
        self.config = config
        head = {"id": "chatcmpl-" + str(uuid.uuid4())}
        self._prefix = b'data: ' + _dumps(head)[:-1] + b',"choices":[{"delta":'
        tail = {"created": int(started), "model": model,
                "system_fingerprint": config.fingerprint, "object": "chat.completion.chunk"}
        self._suffix_open = b',"index":0}],' + _dumps(tail)[1:-1]
        # Text frames: "<hex len>\r\n" + head + "<json token>" + tail.
        self._text_head = self._prefix + b'{"content":'
        self._text_tail = b"}" + self._suffix_open + b"}\n\n\r\n"
        self._text_fixed = len(self._text_head) + len(self._text_tail) - 2

    def event(self, delta: dict[str, Any], finish_reason: str | None = None,
              extra: dict[str, Any] | None = None, empty_choices: bool = False) -> bytes:
        """One complete frame with an arbitrary delta."""
        if empty_choices:
            body = self._prefix[: -len(b'[{"delta":')] + b"[]," + self._suffix_open[len(b',"index":0}],'):]
        else:
            fin = b',"finish_reason":' + _dumps(finish_reason) if finish_reason else b""
            body = self._prefix + _dumps(delta) + fin + self._suffix_open
        if extra:
            body += b"," + _dumps(extra)[1:-1]
        return _frame(body + b"}\n\n")

    def text(self, token: str) -> bytes:
        """The frame of one text token (the hot path)."""
        tok = _ENCODE(token).encode()
        return b"".join((b"%x\r\n" % (self._text_fixed + len(tok)), self._text_head, tok,
                         self._text_tail))


def tool_call_events(enc: ChunkEncoder, calls: list[ToolCall], arg_chunks: int,
                     empty: str | None) -> Iterator[bytes]:
    """The frames of the tool calls: Cerebras' or OpenAI's shape.

    ``arg_chunks`` 1: each call whole in one delta, as Cerebras streams it.
    N > 1: OpenAI's incremental shape, a header delta (id, name, arguments
    "") then the arguments in N pieces.
    """
    for i, call in enumerate(calls):
        if arg_chunks <= 1:
            yield enc.event({"content": empty, "tool_calls": [{
                "index": i, "id": call.id, "type": "function",
                "function": {"name": call.name, "arguments": call.arguments}}]})
            continue
        yield enc.event({"content": empty, "tool_calls": [{
            "index": i, "id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": ""}}]})
        for piece in split_evenly(call.arguments, arg_chunks):
            yield enc.event({"content": empty, "tool_calls": [{
                "index": i, "function": {"arguments": piece}}]})


def stream_frames(answer: Answer, model: str, config: Config, prompt_tokens: int,
                  started: float, include_usage: bool,
                  arg_chunks: int | None = None) -> Iterator[bytes]:
    """Every frame of a streamed completion, [DONE] and the last chunk included.

    ``arg_chunks`` overrides ``config.tool_arg_chunks`` (queued completions
    always use Cerebras' one-delta shape).
    """
    enc = ChunkEncoder(model, config, started)
    empty = "" if config.empty_content_shape == "empty" else None
    if answer.tool_calls and not answer.tokens:
        yield enc.event({"role": "assistant", "content": empty})
    else:
        yield enc.event({"role": "assistant"})
    for token in answer.tokens:
        yield enc.text(token)
    chunks = config.tool_arg_chunks if arg_chunks is None else arg_chunks
    yield from tool_call_events(enc, answer.tool_calls, chunks, empty)
    usage = {"usage": usage_block(prompt_tokens, answer.completion_tokens, answer.cached_tokens),
             "time_info": time_info_block(started)}
    if include_usage:
        # OpenAI semantics of stream_options.include_usage: usage rides on an
        # extra chunk with an empty choices list after the finish chunk.
        yield enc.event({}, answer.finish_reason)
        yield enc.event({}, extra=usage, empty_choices=True)
    else:
        # Cerebras attaches usage and time_info to the finish chunk.
        yield enc.event({}, answer.finish_reason, extra=usage)
    yield _frame(b"data: [DONE]\n\n") + b"0\r\n\r\n"


# --------------------------------------------------------------------------
# The scripted-response queue.
# --------------------------------------------------------------------------

class ResponseQueue:
    """FIFO of scripted responses, shared by all handler threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: deque[dict[str, Any]] = deque()

    def extend(self, items: list[dict[str, Any]]) -> int:
        with self._lock:
            self._items.extend(items)
            return len(self._items)

    def pop(self, body: Any = None) -> dict[str, Any] | None:
        """The first entry this request may take (see :func:`entry_matches`), removed."""
        with self._lock:
            for item in self._items:
                if entry_matches(item, body):
                    self._items.remove(item)
                    return item
            return None

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


def entry_matches(item: dict[str, Any], body: Any) -> bool:
    """Whether a request may take a queue entry.

    ``"match": "text"`` reserves the entry for a request whose last message
    contains that text, ``"tools": true`` for one that offers tools: a real
    Claude Code also sends requests of its own (titles, summaries) that must
    not take an answer meant for its main loop.  An ``sse`` entry waits for a
    streaming request.
    """
    body = body if isinstance(body, dict) else {}
    if item["kind"] == "sse" and not body.get("stream"):
        return False  # a stream answers only a request that asked for one, as a real server does
    if item.get("tools") and not body.get("tools"):
        return False
    wanted = item.get("match")
    if wanted is None:
        return True
    messages = body.get("messages")
    return bool(messages) and wanted in json.dumps(messages[-1], ensure_ascii=False)


def _queued_calls(calls: Any, where: str) -> list[ToolCall]:
    """The ToolCalls of a tool_calls entry (arguments: object or JSON string)."""
    if not isinstance(calls, list) or not calls:
        raise bad_request(f"{where}.calls: must be a non-empty list", f"{where}.calls")
    out = []
    for k, call in enumerate(calls):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise bad_request(f"{where}.calls[{k}].name: field required", f"{where}.calls")
        args = call.get("arguments", {})
        out.append(ToolCall(str(call.get("id") or new_call_id()), call["name"],
                            args if isinstance(args, str) else json.dumps(args)))
    return out


def check_queued(item: Any, where: str) -> dict[str, Any]:
    """Validate one queue entry at POST time; return it ready to answer.

    Mistakes surface as a 400 to the test that queued them, not as a
    confusing answer later.  An sse ``file`` is read now, so a missing
    fixture fails at once.
    """
    if not isinstance(item, dict) or item.get("kind") not in QUEUE_KINDS:
        raise bad_request(f"{where}.kind: must be one of {', '.join(sorted(QUEUE_KINDS))}", where)
    item = dict(item)
    kind = item["kind"]
    if item.get("match") is not None and not isinstance(item["match"], str):
        raise bad_request(f"{where}.match: must be a string", f"{where}.match")
    delay = item.get("chunk_delay")
    if delay is not None and (kind == "error" or not isinstance(delay, (int, float))
                              or isinstance(delay, bool) or not 0 <= delay <= 60):
        raise bad_request(f"{where}.chunk_delay: a number of seconds 0-60 (not for errors)",
                          f"{where}.chunk_delay")
    cached = item.get("cached_tokens")
    if cached is not None and (not isinstance(cached, int) or isinstance(cached, bool) or cached < 0):
        raise bad_request(f"{where}.cached_tokens: must be an integer >= 0", f"{where}.cached_tokens")
    if kind == "error":
        status = item.get("status")
        if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
            raise bad_request(f"{where}.status: must be an integer 400-599", f"{where}.status")
        if not isinstance(item.get("headers", {}), dict):
            raise bad_request(f"{where}.headers: must be an object", f"{where}.headers")
    elif kind == "sse":
        if ("file" in item) == ("body" in item):
            raise bad_request(f"{where}: needs exactly one of file and body", where)
        if "file" in item:
            path = Path(str(item["file"]))
            path = path if path.is_absolute() else UPSTREAM_STREAMS_DIR / path
            try:
                item["body"] = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise bad_request(f"{where}.file: cannot read {path}: {exc.strerror}",
                                  f"{where}.file") from exc
        if not isinstance(item["body"], str):
            raise bad_request(f"{where}.body: must be a string", f"{where}.body")
        if item.get("break") not in (None, "rst", "fin"):
            raise bad_request(f"{where}.break: must be 'rst' or 'fin'", f"{where}.break")
        after = item.get("break_after_events")
        if after is not None and (not isinstance(after, int) or isinstance(after, bool) or after < 0):
            raise bad_request(f"{where}.break_after_events: must be an integer >= 0",
                              f"{where}.break_after_events")
    elif kind == "completion":
        if not isinstance(item.get("message"), dict):
            raise bad_request(f"{where}.message: must be an object", f"{where}.message")
    else:
        _queued_calls(item.get("calls"), where)
        if item.get("text") is not None and not isinstance(item["text"], str):
            raise bad_request(f"{where}.text: must be a string", f"{where}.text")
    return item


def queued_answer(item: dict[str, Any]) -> Answer:
    """The Answer of a completion or tool_calls entry."""
    if item["kind"] == "tool_calls":
        calls = _queued_calls(item["calls"], "")
        text = item.get("text") or None
        message = {"role": "assistant", "content": text, "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls]}
        return Answer(text_tokens(text, 0) if text else [], calls, "tool_calls", message)
    message = item["message"]
    content = message.get("content")
    calls = []
    for raw in message.get("tool_calls") or []:
        if not isinstance(raw, dict):
            continue
        fn = raw["function"] if isinstance(raw.get("function"), dict) else {}
        calls.append(ToolCall(str(raw.get("id") or new_call_id()), str(fn.get("name", "")),
                              str(fn.get("arguments", ""))))
    tokens = text_tokens(content, 0) if isinstance(content, str) and content else []
    return Answer(tokens, calls, item.get("finish_reason"), message)


def error_response(item: dict[str, Any], model: str) -> tuple[int, Any, dict[str, str]]:
    """Status, body and extra headers of a queued error."""
    status = item["status"]
    body = item.get("body")
    if body is None:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        message, type_, param, code = ERROR_DEFAULTS.get(status, (phrase, "api_error", None, None))
        body = {"message": message.replace("{model}", model), "type": type_, "param": param,
                "code": code}
    headers = dict(RATE_LIMIT_HEADERS_429) if status == 429 and item.get(
        "rate_limit_headers", True) else {}
    headers.update({str(k): str(v) for k, v in (item.get("headers") or {}).items()})
    return status, body, headers


def sse_events_of(data: bytes) -> list[bytes]:
    """Split raw SSE bytes into events, each keeping its "\n\n" delimiter."""
    parts = data.split(b"\n\n")
    events = [part + b"\n\n" for part in parts[:-1]]
    if parts[-1]:
        events.append(parts[-1])
    return events


# --------------------------------------------------------------------------
# Cerebras' quota and the fake's counters.
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Reservation:
    """Tokens an admitted request holds in the window it was admitted in."""

    window: int
    tokens: int


class TokenQuota:
    """Cerebras' per-minute token quota and per-day request count, thread safe.

    Fixed windows from ``t0`` (the server's start): token window k covers
    ``[t0 + k*S, t0 + (k+1)*S)``, day d likewise with 86400 s.  :meth:`admit`
    reserves prompt + requested output, :meth:`settle` replaces that with
    what the answer actually cost.  ``clock`` is for tests.
    """

    def __init__(self, tokens_per_minute: int, window_seconds: float, requests_per_day: int,
                 clock: Any = time.monotonic, requests_per_minute: int = 0) -> None:
        self.limit = tokens_per_minute
        self.window_seconds = window_seconds
        self.requests_per_day = requests_per_day
        self.requests_per_minute = requests_per_minute
        self._minute_requests = 0
        self._clock = clock
        self._lock = threading.Lock()
        self._t0 = clock()
        self._window = 0
        self._used = 0
        self._day = 0
        self._requests = 0

    def _roll(self, now: float) -> None:
        """Start a new token window / day when the clock has passed into one (lock held)."""
        window = int((now - self._t0) // self.window_seconds)
        if window != self._window:
            self._window, self._used, self._minute_requests = window, 0, 0
        day = int((now - self._t0) // DAY_SECONDS)
        if day != self._day:
            self._day, self._requests = day, 0

    def _headers(self, now: float) -> dict[str, str]:
        """Cerebras' x-ratelimit-* headers for the current state (lock held)."""
        elapsed = now - self._t0
        return {
            "x-ratelimit-limit-tokens-minute": str(self.limit),
            "x-ratelimit-remaining-tokens-minute": str(max(0, self.limit - self._used)),
            "x-ratelimit-reset-tokens-minute":
                f"{(self._window + 1) * self.window_seconds - elapsed:.2f}",
            "x-ratelimit-limit-requests-day": str(self.requests_per_day),
            "x-ratelimit-remaining-requests-day": str(max(0, self.requests_per_day - self._requests)),
            "x-ratelimit-reset-requests-day": f"{(self._day + 1) * DAY_SECONDS - elapsed:.2f}",
        } | ({
            "x-ratelimit-limit-requests-minute": str(self.requests_per_minute),
            "x-ratelimit-remaining-requests-minute":
                str(max(0, self.requests_per_minute - self._minute_requests)),
            "x-ratelimit-reset-requests-minute":
                f"{(self._window + 1) * self.window_seconds - elapsed:.2f}",
        } if self.requests_per_minute > 0 else {})

    def headers(self) -> dict[str, str]:
        """The headers now, charging nothing (for answers that are refused)."""
        with self._lock:
            now = self._clock()
            self._roll(now)
            return self._headers(now)

    def admit(self, tokens: int) -> tuple[Reservation | None, RequestError | None, dict[str, str]]:
        """Reserve ``tokens`` and count the request, or say why not (the 429).

        Returns (reservation, None, headers) or (None, error, headers).
        """
        with self._lock:
            now = self._clock()
            self._roll(now)
            if self._requests >= self.requests_per_day:
                _, type_, param, _ = ERROR_DEFAULTS[429]
                error = RequestError(429, REQUESTS_PER_DAY_MESSAGE, type_=type_, param=param,
                                     code="request_quota_exceeded")
                return None, error, self._headers(now)
            if 0 < self.requests_per_minute <= self._minute_requests:
                _, type_, param, _ = ERROR_DEFAULTS[429]
                error = RequestError(429, REQUESTS_PER_MINUTE_MESSAGE, type_=type_, param=param,
                                     code="request_quota_exceeded")
                return None, error, self._headers(now)
            if self._used + tokens > self.limit:
                message, type_, param, code = ERROR_DEFAULTS[429]
                error = RequestError(429, message, type_=type_, param=param, code=code)
                return None, error, self._headers(now)
            self._used += tokens
            self._requests += 1
            self._minute_requests += 1
            return Reservation(self._window, tokens), None, self._headers(now)

    def settle(self, reservation: Reservation, tokens: int) -> dict[str, str]:
        """Replace a reservation by the actual cost; the headers after that charge.

        A reservation from a window that has since turned changes nothing:
        the new window starts empty.
        """
        with self._lock:
            now = self._clock()
            self._roll(now)
            if reservation.window == self._window:
                self._used = max(0, self._used - reservation.tokens + tokens)
            return self._headers(now)


class AnswerLog:
    """What became of each chat answer (``/_fake/answers``), thread safe.

    A test of a relay needs to know whether the relay stopped reading an answer
    its own client abandoned: the record says how far the answer got and when
    the fake saw its client leave.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []

    def start(self, stream: bool, model: str) -> dict[str, Any]:
        """A new record, outcome null until end()."""
        record = {"stream": stream, "model": model, "started": time.time(), "ended": None,
                  "chunks_written": 0, "outcome": None}
        with self._lock:
            self._records.append(record)
        return record

    def end(self, record: dict[str, Any], outcome: str, chunks_written: int) -> None:
        with self._lock:
            record.update(ended=time.time(), outcome=outcome, chunks_written=chunks_written)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._records]

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


class Stats:
    """The counters /_fake/stats reports, thread safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests = 0
            self._by_status: dict[str, int] = {}
            self._context = 0
            self._limited = 0
            self._max_prompt = 0
            self._charged = 0
            self._reads = 0
            self._summaries = 0

    def read_issued(self) -> None:
        with self._lock:
            self._reads += 1

    def summary_asked(self) -> None:
        with self._lock:
            self._summaries += 1

    def response(self, status: int) -> None:
        """One chat request answered with ``status``."""
        with self._lock:
            self._requests += 1
            key = str(status)
            self._by_status[key] = self._by_status.get(key, 0) + 1

    def context_length_exceeded(self) -> None:
        with self._lock:
            self._context += 1

    def rate_limited(self) -> None:
        with self._lock:
            self._limited += 1

    def admitted(self, prompt: int) -> None:
        with self._lock:
            self._max_prompt = max(self._max_prompt, prompt)

    def charged(self, tokens: int) -> None:
        with self._lock:
            self._charged += tokens

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"requests": self._requests, "by_status": dict(sorted(self._by_status.items())),
                    "context_length_exceeded": self._context, "rate_limited": self._limited,
                    "max_prompt_tokens": self._max_prompt, "tokens_charged": self._charged,
                    "reads_issued": self._reads, "summaries_asked": self._summaries}


# Claude Code's compaction request ends with this instruction (2.x: "... of the conversation
# so far" / "... of this conversation").
SUMMARY_REQUEST_TEXT = "Your task is to create a detailed summary of"
# In a <summary> block, as Claude Code asks: a reply without one fails ("the model's reply has no
# <summary> block") and Claude Code asks again, a second request per compaction that the real model
# does not cause.
SUMMARY_ANSWER = ("<summary>The user asked to read a list of files one at a time; several were read. "
                  "Continue with the next file.</summary>")


class ReadScript:
    """``--read-files``: the files a session is made to read, one Read call per answer."""

    def __init__(self, paths: tuple[str, ...], per_answer: int = 1) -> None:
        self._lock = threading.Lock()
        self._paths = list(paths)
        self._per_answer = max(1, per_answer)
        self._next = 0

    def answer(self, body: dict[str, Any], stats: Stats) -> Answer | None:
        """A Read call for the next file, a summary for a compaction request, else None."""
        if not self._paths:
            return None
        messages = body.get("messages") or []
        if messages and SUMMARY_REQUEST_TEXT in json.dumps(messages[-1], ensure_ascii=False):
            stats.summary_asked()
            return Answer(tokens=text_tokens(SUMMARY_ANSWER, 0))
        if "Read" not in tool_names(body.get("tools")):
            return None
        with self._lock:
            if self._next >= len(self._paths):
                return None
            paths = self._paths[self._next:self._next + self._per_answer]
            self._next += len(paths)
        for _ in paths:
            stats.read_issued()
        return Answer(tokens=[], tool_calls=[ToolCall(new_call_id(), "Read", json.dumps({"file_path": path}))
                                             for path in paths])


SSE_COMPLETION_TOKENS_RE = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')


def sse_completion_tokens(events: list[bytes]) -> int:
    """The last usage.completion_tokens in replayed SSE events (0 if none came)."""
    for event in reversed(events):
        match = SSE_COMPLETION_TOKENS_RE.search(event)
        if match:
            return int(match.group(1))
    return 0


# --------------------------------------------------------------------------
# HTTP.
# --------------------------------------------------------------------------

class RequestLog:
    """Append-only JSON-lines log; one line per request, never a secret."""

    def __init__(self, path: str | None) -> None:
        self._lock = threading.Lock()
        self._fh = None
        if path:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._fh = os.fdopen(fd, "a", encoding="utf-8")

    def write(self, method: str, path: str, status: int, bearer: bool, body: Any) -> None:
        if self._fh is None:
            return
        line = json.dumps({"ts": time.time(), "method": method, "path": path, "status": status,
                           "bearer": bearer, "body": body}, ensure_ascii=False,
                          separators=(",", ":"))
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()


def bearer_token(header: str | None) -> str | None:
    """The bearer token of an Authorization header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


class FakeCerebrasHandler(BaseHTTPRequestHandler):
    """One connection; HTTP/1.1 keep-alive, chunked SSE for streams."""

    protocol_version = "HTTP/1.1"
    server_version = "fake-cerebras/1.0"
    sys_version = ""
    config: Config
    request_log: RequestLog
    queue: ResponseQueue
    quota: TokenQuota | None
    stats: Stats
    prefix_cache: PrefixCache
    answers: AnswerLog

    def setup(self) -> None:
        super().setup()
        # One SSE event per TCP segment, as the real API streams: Nagle would
        # coalesce small chunks and distort the benchmarks' chunk gaps.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: the request log is the record, stderr stays clean."""

    # -- plumbing -----------------------------------------------------------
    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send_json(self, status: int, obj: Any, log_body: Any,
                   headers: dict[str, str] | None = None, log: bool = True) -> None:
        payload = _dumps(obj)
        if log:
            self._log(status, log_body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _log(self, status: int, body: Any) -> None:
        if self.path.split("?", 1)[0].rstrip("/") == "/v1/chat/completions":
            self.stats.response(status)
        self.request_log.write(self.command, self.path, status,
                               bearer_token(self.headers.get("Authorization")) is not None, body)

    def _auth_error(self) -> RequestError | None:
        """Cerebras' answers to a missing or wrong key (None = authorised)."""
        token = bearer_token(self.headers.get("Authorization"))
        if token is None:
            if self.config.no_auth_status == 403:
                # What the live API was seen answering with no header at all.
                err = RequestError(403, "Not authenticated")
                err.body = {"detail": "Not authenticated"}
                return err
            return RequestError(401, "Wrong API Key", param="api_key", code="wrong_api_key")
        if self.config.api_key is not None and token != self.config.api_key:
            return RequestError(401, "Wrong API Key", param="api_key", code="wrong_api_key")
        return None

    # -- routes ---------------------------------------------------------------
    def _queue_route(self, path: str) -> bool:
        """/_fake/queue (GET, POST, DELETE; no auth): True when handled."""
        if path != "/_fake/queue":
            return False
        raw = self._read_body()
        if self.command == "GET":
            self._send_json(200, {"queued": len(self.queue)}, None)
        elif self.command == "DELETE":
            self.queue.clear()
            self._send_json(200, {"queued": 0}, None)
        else:
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                self._send_json(400, bad_request("Invalid JSON in request body").body,
                                raw.decode("utf-8", "replace"))
                return True
            try:
                items = body.get("responses") if isinstance(body, dict) else None
                if not isinstance(items, list):
                    raise bad_request("responses: field required (a list)", "responses")
                checked = [check_queued(item, f"responses[{i}]") for i, item in enumerate(items)]
            except RequestError as exc:
                self._send_json(exc.status, exc.body, body)
                return True
            self._send_json(200, {"queued": self.queue.extend(checked)}, body)
        return True

    def _stats_route(self, path: str) -> bool:
        """/_fake/stats (GET, DELETE; no auth): True when handled."""
        if path != "/_fake/stats" or self.command not in ("GET", "DELETE"):
            return False
        self._read_body()
        if self.command == "DELETE":
            self.stats.reset()
        self._send_json(200, self.stats.snapshot(), None)
        return True

    def _answers_route(self, path: str) -> bool:
        """/_fake/answers (GET, DELETE; no auth): True when handled."""
        if path != "/_fake/answers" or self.command not in ("GET", "DELETE"):
            return False
        self._read_body()
        if self.command == "DELETE":
            self.answers.clear()
        self._send_json(200, {"answers": self.answers.snapshot()}, None)
        return True

    def _client_gone_within(self, seconds: float) -> bool:
        """Wait ``seconds`` (a paced chunk, a slow answer), or less: True as soon as the
        client closes its connection meanwhile.  A client sends nothing while its
        answer is being written, so a readable socket is its FIN or reset."""
        deadline = time.perf_counter() + seconds
        left = seconds
        while left > 0:
            readable, _, _ = select.select([self.connection], [], [], left)
            if readable:
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        return True
                except (ConnectionResetError, BrokenPipeError):
                    return True
                time.sleep(max(0.0, deadline - time.perf_counter()))  # bytes, not a close
                return False
            left = deadline - time.perf_counter()
        return False

    def _answer_whole(self, build: Any, log_body: Any, headers: dict[str, str] | None,
                      generation_seconds: float) -> None:
        """A non-streamed 200 answer (``build()`` makes its body), sent after
        ``generation_seconds`` unless the client leaves first."""
        self._log(200, log_body)
        record = self.answers.start(False, str(log_body.get("model")))
        if self._client_gone_within(generation_seconds):
            self.close_connection = True
            self.answers.end(record, "client_closed", 0)
            return
        try:
            self._send_json(200, build(), log_body, headers, log=False)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            self.answers.end(record, "client_closed", 0)
            return
        self.answers.end(record, "finished", 1)

    def do_DELETE(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if not (self._queue_route(path) or self._stats_route(path) or self._answers_route(path)):
            self._read_body()
            self._send_json(404, {"message": f"Not found: {path}", "type": "not_found_error",
                                  "param": None, "code": "not_found"}, None)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if self._queue_route(path) or self._stats_route(path) or self._answers_route(path):
            return
        if path in ("/health", "/v1/health"):
            self._send_json(200, {"status": "ok"}, None)
            return
        if path == "/v1/models" or path.startswith("/v1/models/"):
            err = self._auth_error()
            if err:
                self._send_json(err.status, err.body, None)
                return
            created = 1_721_692_800
            models = [{"id": m, "object": "model", "created": created, "owned_by": "Cerebras"}
                      for m in self.config.models]
            if path == "/v1/models":
                self._send_json(200, {"object": "list", "data": models}, None)
                return
            wanted = path[len("/v1/models/"):]
            for m in models:
                if m["id"] == wanted:
                    self._send_json(200, m, None)
                    return
            self._send_json(404, model_not_found(wanted).body, None)
            return
        self._send_json(404, {"message": f"Not found: {path}", "type": "not_found_error",
                              "param": None, "code": "not_found"}, None)

    def do_POST(self) -> None:
        started = time.time()
        path = self.path.split("?", 1)[0].rstrip("/")
        if self._queue_route(path):
            return
        raw = self._read_body()
        try:
            body: Any = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            body = raw.decode("utf-8", "replace")
            if path == "/v1/chat/completions":
                err = self._auth_error() or bad_request("Invalid JSON in request body")
                self._send_json(err.status, err.body, body)
                return
        if path != "/v1/chat/completions":
            self._send_json(404, {"message": f"Not found: {path}", "type": "not_found_error",
                                  "param": None, "code": "not_found"}, body)
            return
        try:
            err = self._auth_error()
            if err:
                raise err
            if self.config.strict:
                if not isinstance(body, dict):
                    raise bad_request("request body must be a JSON object", None)
                validate_strict(body, self.config.vision_models)
            else:
                validate_lenient(body)
            if body["model"] not in self.config.models:
                raise model_not_found(body["model"])
        except RequestError as exc:
            self._send_json(exc.status, exc.body, body)
            return
        prompt = prompt_tokens(body)
        admitted, reservation = self._admit(body, prompt)
        if not admitted:
            return
        cached = self.prefix_cache.cached_tokens(body, prompt) if self.config.prefix_cache else 0
        queued = self.queue.pop(body)
        arg_chunks = None
        if queued is None:
            answer = self.reads.answer(body, self.stats) or make_answer(body, self.config)
        elif queued["kind"] == "error":
            # A scripted answer: its own headers, no tokens charged.
            self._charge(reservation, 0)
            status, payload, headers = error_response(queued, body["model"])
            self._send_json(status, payload, body, headers)
            return
        elif queued["kind"] == "sse":
            self._log(200, body)
            self._replay(queued, body["model"], prompt, reservation)
            return
        else:
            answer, arg_chunks = queued_answer(queued), 1
        answer.cached_tokens = cached if queued is None or queued.get("cached_tokens") is None \
            else queued["cached_tokens"]
        headers = self._charge(reservation, prompt + answer.completion_tokens)
        chunk_delay = float(queued.get("chunk_delay") or 0) if queued else 0.0
        if not body.get("stream"):
            self._answer_whole(lambda: completion_body(answer, body["model"], self.config, prompt, started),
                               body, headers, chunk_delay * (len(answer.tokens) + len(answer.tool_calls)))
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self._log(200, body)
        self._stream(stream_frames(answer, body["model"], self.config, prompt,
                                   started, include_usage, arg_chunks), len(answer.tokens), headers,
                     body["model"], chunk_delay)

    def _admit(self, body: dict[str, Any], prompt: int) -> tuple[bool, Reservation | None]:
        """The context-window check (400), then the quota (429).

        (False, None) when refused (and answered); else (True, the quota's
        reservation or None with the quota off).
        """
        requested = requested_output(body)
        window = self.config.context_window
        if window > 0 and prompt + requested > window:
            self.stats.context_length_exceeded()
            err = context_length_exceeded(prompt + requested, window)
            self._send_json(err.status, err.body, body,
                            self.quota.headers() if self.quota is not None else None)
            return False, None
        reservation = None
        if self.quota is not None:
            reservation, err, headers = self.quota.admit(prompt + requested)
            if err is not None:
                self.stats.rate_limited()
                self._send_json(err.status, err.body, body, headers)
                return False, None
        self.stats.admitted(prompt)
        return True, reservation

    def _charge(self, reservation: Reservation | None, tokens: int) -> dict[str, str] | None:
        """Charge an answered request: the quota's headers after it (None when off)."""
        self.stats.charged(tokens)
        if self.quota is None or reservation is None:
            return None
        return self.quota.settle(reservation, tokens)

    def _replay(self, item: dict[str, Any], model: str, prompt: int = 1,
                reservation: Reservation | None = None) -> None:
        """Send a queued raw SSE body verbatim, one event per chunk, maybe broken.

        "rst": SO_LINGER {1, 0} then close, so the kernel sends a reset
        instead of a FIN.  "fin": shut the socket down where the terminating
        zero-length chunk should have come (a chunked body cut short).
        """
        events = sse_events_of(item["body"].replace("{model}", model).encode())
        mode = item.get("break")
        after = item.get("break_after_events")
        sent = events[:after] if mode and after is not None else events
        headers = self._charge(reservation, prompt + sse_completion_tokens(sent))
        frames = [_frame(e) for e in sent]
        if not mode:
            frames.append(b"0\r\n\r\n")
        self._stream(iter(frames), len(frames), headers, model, float(item.get("chunk_delay") or 0))
        if not mode:
            return
        self.close_connection = True
        try:
            if mode == "rst":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                os.close(self.connection.detach())
            else:
                self.connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _stream(self, frames: Iterator[bytes], text_chunks: int,
                headers: dict[str, str] | None = None, model: str = "",
                chunk_delay: float = 0.0) -> None:
        """Send every frame with its own send(), paced when asked.

        No coalescing: each SSE event is one write, because the benchmarks
        measure the gap between chunks as the client receives them.
        ``headers`` (the quota's) go out with the response head.  A queued
        answer's ``chunk_delay`` paces it instead of --tokens-per-second.
        The answer's record (/_fake/answers) says how many frames went out
        and whether the client closed the connection first.
        """
        record = self.answers.start(True, model)
        rate = self.config.tokens_per_second
        interval = chunk_delay if chunk_delay > 0 else (1.0 / rate if rate > 0 else 0.0)
        written = 0
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            send = self.connection.sendall
            if interval <= 0:
                for frame in frames:
                    send(frame)
                    written += 1
            else:
                t0 = time.perf_counter()
                for i, frame in enumerate(frames):
                    # Absolute schedule (t0 + i * interval): wait overshoot never
                    # accumulates into a slower stream.
                    delay = t0 + i * interval - time.perf_counter()
                    if delay > 0 and self._client_gone_within(delay):
                        raise BrokenPipeError("the client closed the connection")
                    send(frame)
                    written += 1
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            self.answers.end(record, "client_closed", written)
            return
        self.answers.end(record, "finished", written)


def model_not_found(model: str) -> RequestError:
    """Cerebras' 404 for a model it does not serve."""
    return RequestError(404, f"Model {model} does not exist or you do not have access to it.",
                        type_="not_found_error", param="model", code="model_not_found")


class FakeCerebrasServer(ThreadingHTTPServer):
    """Threaded server; handler threads die with the process."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8400, help="port (default 8400; 0 = any free)")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS),
                   help="comma-separated model ids served by /v1/models and accepted by chat")
    p.add_argument("--api-key-file", help="accept only the key in this file (default: any bearer)")
    p.add_argument("--tool-preference", default="Agent,Task",
                   help="tools to call, in order of preference (default Agent,Task)")
    p.add_argument("--stream-tokens", type=int, default=0,
                   help="stream text answers as exactly N one-token chunks (0 = a few words)")
    p.add_argument("--tokens-per-second", type=float, default=0.0,
                   help="pace streamed chunks at R per second (0 = as fast as possible)")
    p.add_argument("--empty-content-shape", choices=("null", "empty"), default="null",
                   help='delta.content beside tool-call deltas: null (default) or ""')
    p.add_argument("--tool-arg-chunks", type=int, default=1,
                   help="1 (default): each streamed tool call whole in one delta, as Cerebras "
                        "sends it; N > 1: OpenAI's incremental shape, arguments in N pieces")
    p.add_argument("--strict", action="store_true",
                   help="reject with 400 what a strict OpenAI-compatible server rejects")
    p.add_argument("--vision-models", default="",
                   help="comma-separated models whose user messages may carry image_url parts "
                        "with a base64 data URL (--strict; default none)")
    p.add_argument("--no-auth-status", type=int, choices=(401, 403), default=401,
                   help="status for a request without a bearer token (default 401; the live "
                        'API was seen answering 403 {"detail":"Not authenticated"})')
    p.add_argument("--context-window", type=int, default=0,
                   help="refuse with Cerebras' 400 context_length_exceeded a request whose prompt "
                        "tokens plus max_completion_tokens/max_tokens exceed N (default 0 = off)")
    p.add_argument("--tokens-per-minute", type=int, default=0,
                   help="Cerebras' token quota per window: reserve prompt + max tokens, 429 when "
                        "it does not fit; x-ratelimit-* headers on chat answers (default 0 = off)")
    p.add_argument("--quota-window-seconds", type=float, default=60.0,
                   help="length of the --tokens-per-minute window in seconds (default 60; tests "
                        "shorten it)")
    p.add_argument("--requests-per-day", type=int, default=14400,
                   help="chat requests per day with the quota on (default 14400)")
    p.add_argument("--read-files", default="",
                   help="comma-separated absolute paths: each answer to a request offering Read calls Read "
                        "on the next one (a long session), a compaction request gets a short summary")
    p.add_argument("--reads-per-answer", type=int, default=1,
                   help="with --read-files: Read calls per answer, made at once (default 1)")
    p.add_argument("--requests-per-minute", type=int, default=0,
                   help="with the quota on: chat requests per quota window, 429 beyond (default 0 = "
                        "no limit; Cerebras' free tier: 30)")
    p.add_argument("--prefix-cache", action="store_true",
                   help="report usage.prompt_tokens_details.cached_tokens from a model of Cerebras' "
                        "prompt prefix cache (default: 0, or a queued answer's cached_tokens)")
    p.add_argument("--request-log", help="append one JSON line per request to this file")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> Config:
    api_key = None
    if args.api_key_file:
        with open(args.api_key_file, encoding="utf-8") as fh:
            api_key = fh.read().strip()
        if not api_key:
            raise SystemExit(f"fake_cerebras: {args.api_key_file} is empty")
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    if args.quota_window_seconds <= 0:
        raise SystemExit("fake_cerebras: --quota-window-seconds must be > 0")
    return Config(
        models=models,
        api_key=api_key,
        tool_preference=tuple(t.strip() for t in args.tool_preference.split(",") if t.strip()),
        stream_tokens=max(0, args.stream_tokens),
        tokens_per_second=max(0.0, args.tokens_per_second),
        empty_content_shape=args.empty_content_shape,
        tool_arg_chunks=max(1, args.tool_arg_chunks),
        strict=args.strict,
        vision_models=tuple(m.strip() for m in args.vision_models.split(",") if m.strip()),
        no_auth_status=args.no_auth_status,
        context_window=max(0, args.context_window),
        tokens_per_minute=max(0, args.tokens_per_minute),
        quota_window_seconds=args.quota_window_seconds,
        requests_per_day=max(0, args.requests_per_day),
        read_files=tuple(f.strip() for f in args.read_files.split(",") if f.strip()),
        reads_per_answer=max(1, args.reads_per_answer),
        requests_per_minute=max(0, args.requests_per_minute),
        prefix_cache=args.prefix_cache,
    )


def make_server(config: Config, host: str, port: int, request_log: str | None) -> FakeCerebrasServer:
    """A bound server (port 0 = pick one) ready for serve_forever()."""
    quota = None
    if config.tokens_per_minute > 0:
        quota = TokenQuota(config.tokens_per_minute, config.quota_window_seconds,
                           config.requests_per_day, requests_per_minute=config.requests_per_minute)
    handler = type("Handler", (FakeCerebrasHandler,),
                   {"config": config, "request_log": RequestLog(request_log),
                    "queue": ResponseQueue(), "quota": quota, "stats": Stats(),
                    "prefix_cache": PrefixCache(),
                    "reads": ReadScript(config.read_files, config.reads_per_answer),
                    "answers": AnswerLog()})
    return FakeCerebrasServer((host, port), handler)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server = make_server(build_config(args), args.host, args.port, args.request_log)

    def _stop(signum: int, _frame: Any) -> None:
        # shutdown() blocks until serve_forever() returns: not from its thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    host, port = server.server_address[:2]
    print(f"fake_cerebras listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
