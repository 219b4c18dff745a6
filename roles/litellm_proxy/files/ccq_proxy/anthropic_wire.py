"""What Claude Code receives: OpenAI chat results written as Anthropic /v1/messages.

Part of the ccq_proxy package (litellm_patches.py and stream_fastpath.py import it).  Plain
Python, no LiteLLM import: both relay paths use it, so they cannot disagree.

* ``AnthropicStream`` turns OpenAI chat-completion chunks (dicts) into Anthropic SSE
  events.  The stream fast path feeds it the upstream's parsed bytes; LiteLLM's own
  path feeds it the chunks of its CustomStreamWrapper.  It replaces LiteLLM 1.74's
  AnthropicStreamWrapper, which opened one tool_use block for a whole turn
  (``_should_start_new_content_block`` compares block *types*, so a second tool call
  is "the same block"; ``_translate_streaming_openai_chunk_to_anthropic`` joins every
  call's arguments into one input_json_delta) and called a stream that broke off
  a finished answer (``end_turn``).
* ``anthropic_content`` is the non-streaming counterpart (1.74 dropped a text preamble
  beside tool calls, and ``json.loads("")`` of an argument-less call was an HTTP 500).
* ``anthropic_error`` and friends: an upstream error in Anthropic's envelope with the
  upstream's own words and a Retry-After that Claude Code's backoff honours.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii as _jstr
from typing import Any

# OpenAI finish_reason -> Anthropic stop_reason.
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                "function_call": "tool_use", "content_filter": "refusal"}

# What Claude Code reads when a stream breaks off: its client retries an error event of
# this type (as it retries Anthropic's own mid-stream overloads) and drops the partial
# answer, where a message_stop would make the partial answer final.
TRUNCATED_STREAM_ERROR = "overloaded_error"
TRUNCATED_STREAM_MESSAGE = ("ccq: the upstream stream ended before the model finished "
                            "(no finish_reason); the answer is incomplete, retry the request")

# A tool call whose arguments are not a JSON object even after repair (issue 21 F): Claude Code
# must never run a tool with made-up input.  The stream ends in this error event instead of
# message_stop (Claude Code retries it, as it retries a broken-off stream, and drops the
# partial answer); a non-streamed answer is an HTTP 529 of the same type.  overloaded_error,
# not invalid_request_error: the request was fine, the model's output was not, and a new
# sample usually is; Claude Code does not retry invalid_request_error.
BAD_TOOL_ARGUMENTS_ERROR = "overloaded_error"
BAD_TOOL_ARGUMENTS_STATUS = 529
BAD_TOOL_ARGUMENTS_MESSAGE = ("ccq: the model sent the arguments of a {name} tool call that are not a "
                              "JSON object and cannot be repaired; retry the request")

_log = logging.getLogger("ccq.anthropic_wire")
# Tool-call arguments repaired since start (quota.py's state file reports it to `ccq status`).
STATS: dict[str, int] = {"tool_arguments_repaired": 0, "tool_arguments_unrepairable": 0}


class ToolArgumentsError(ValueError):
    """A tool call's arguments are not a JSON object, even repaired.  ``status_code``: the
    LiteLLM proxy answers an exception by it (litellm_patches.py, items k and p)."""

    status_code = BAD_TOOL_ARGUMENTS_STATUS

    def __init__(self, name: str) -> None:
        self.message = BAD_TOOL_ARGUMENTS_MESSAGE.format(name=name or "(unnamed)")
        super().__init__(self.message)


# Leftovers around a JSON object that are unambiguous: a code fence (```json ... ```), and
# gpt-oss' harmony control tokens (<|call|>, <|end|>, <|return|>, ...) after the object.
_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*\n?(.*?)\n?\s*```\s*$", re.S)
_HARMONY = re.compile(r"<\|[a-z_]+\|>")


def repair_arguments(raw: Any, name: str = "") -> str:
    """A tool call's arguments as the text of a JSON object, repaired when the defect is
    unambiguous; raises ToolArgumentsError when they cannot become a JSON object.

    "" (a tool without parameters) is "{}"; valid arguments are returned unchanged.  Repairs:
    a code fence around the object, harmony tokens after it (gpt-oss), then the PyPI library
    json-repair for a trailing comma or a missing closing brace (qwen), accepted only when the
    text starts as an object and the result is one.  Each repair is logged on one line
    without the arguments (they carry the user's code).
    """
    text = "" if raw is None else str(raw)
    if not text.strip():
        return "{}"
    try:
        if isinstance(json.loads(text), dict):
            return text
    except ValueError:
        pass
    cleaned = _HARMONY.sub("", text).strip()
    fenced = _FENCE.match(cleaned)
    if fenced:
        cleaned = fenced.group(1).strip()
    obj: Any = None
    how = "cleanup"
    try:
        obj = json.loads(cleaned)
    except ValueError:
        if cleaned.startswith("{"):
            try:
                import json_repair  # in LiteLLM's venv (the role's lock)

                obj, how = json_repair.loads(cleaned), "json-repair"
            except Exception:  # noqa: BLE001 - not installed, or it gave up: the error below
                obj = None
    if not isinstance(obj, dict):
        STATS["tool_arguments_unrepairable"] += 1
        _log.warning("ccq: the arguments of a %s tool call are not a JSON object (%d chars); "
                     "Claude Code gets an error to retry", name or "(unnamed)", len(text))
        raise ToolArgumentsError(name)
    STATS["tool_arguments_repaired"] += 1
    _log.warning("ccq: repaired the arguments of a %s tool call (%s, %d chars)", name or "(unnamed)",
                 how, len(text))
    return json.dumps(obj, ensure_ascii=False)


# HTTP status of an upstream error -> Anthropic error type
# (https://docs.anthropic.com/en/api/errors).
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
               503: "overloaded_error", 529: "overloaded_error"}


# While a reasoning model thinks (its ``delta.reasoning``, which is never relayed: Claude Code
# would need signed thinking blocks), Claude Code would see nothing at all; a ping every few
# seconds, as Anthropic's own API sends, tells it the stream is alive.
PING_INTERVAL = 5.0


def _event(obj: dict[str, Any]) -> bytes:
    return f"event: {obj['type']}\ndata: {json.dumps(obj)}\n\n".encode()


def _text_delta(index: int, text: str) -> bytes:
    return ('event: content_block_delta\ndata: {"type": "content_block_delta", "index": '
            f'{index:d}, "delta": {{"type": "text_delta", "text": {_jstr(text)}}}}}\n\n').encode()


def _json_delta(index: int, partial: str) -> bytes:
    return ('event: content_block_delta\ndata: {"type": "content_block_delta", "index": '
            f'{index:d}, "delta": {{"type": "input_json_delta", "partial_json": {_jstr(partial)}}}}}\n\n').encode()


def _block_stop(index: int) -> bytes:
    return f'event: content_block_stop\ndata: {{"type": "content_block_stop", "index": {index:d}}}\n\n'.encode()


def error_event(error_type: str, message: str) -> bytes:
    """An Anthropic SSE ``error`` event."""
    return _event({"type": "error", "error": {"type": error_type, "message": message}})


def new_tool_id() -> str:
    return "toolu_" + uuid.uuid4().hex[:24]


def cached_tokens(usage: Any) -> int | None:
    """The prompt tokens the upstream served from its prefix cache, or None when it did not say.

    Cerebras (like OpenAI) reports them as ``usage.prompt_tokens_details.cached_tokens``,
    on the final stream chunk and in a non-streamed answer's usage.
    """
    details = usage.get("prompt_tokens_details") if isinstance(usage, Mapping) else None
    value = details.get("cached_tokens") if isinstance(details, Mapping) else None
    return value if type(value) is int and value >= 0 else None


def anthropic_usage(prompt_tokens: int, completion_tokens: int,
                    cached: int | None = None) -> dict[str, int]:
    """Usage as Anthropic counts it: ``input_tokens`` are the prompt tokens NOT read from the
    cache, ``cache_read_input_tokens`` the ones that were (OpenAI's prompt_tokens counts both).
    Claude Code adds the two (and cache_creation_input_tokens) for the context size, and shows
    cache reads apart; before this, every cached token was reported as a fresh input token.
    Without a cached count from the upstream the usage stays as it was (no cache field)."""
    prompt, completion = prompt_tokens or 0, completion_tokens or 0
    if cached is None:
        return {"input_tokens": prompt, "output_tokens": completion}
    cached = min(cached, prompt)
    return {"input_tokens": prompt - cached, "output_tokens": completion,
            "cache_read_input_tokens": cached}


class _Block:
    """One content block: text, or one tool call (by its upstream index)."""

    __slots__ = ("id", "key", "kind", "name", "parts", "sent_args")

    def __init__(self, kind: str, key: Any) -> None:
        self.kind = kind
        self.key = key
        self.id: str | None = None
        self.name: str | None = None
        self.parts: list[str] = []
        self.sent_args = False


class AnthropicStream:
    """OpenAI chat chunks in, Anthropic /v1/messages SSE events out.

    Blocks appear in the order their first delta arrived.  The block that is open streams
    live; a tool call that starts while another tool call is open is held and sent whole
    after it, because a closed Anthropic block cannot be reopened and OpenAI-compatible
    servers may interleave the argument pieces of parallel calls (Cerebras sends each call
    whole in one delta, so nothing waits there).  Text that follows a tool call likewise
    becomes its own block.

    ``take`` returns the events ``feed`` produced; ``finish`` the closing events, or an
    error event when the upstream never sent a finish_reason (a truncated answer must not
    look finished); ``fail`` an error event for an exception mid-stream.
    """

    def __init__(self, model: str, clock: Any = time.monotonic) -> None:
        self.model = model
        self.clock = clock
        self.last_event_at = clock()
        self.index = -1  # index of the open block
        self.open: _Block | None = None
        self.held: list[_Block] = []
        self.blocks: list[_Block] = []  # every block, in order (for logging the response)
        self.tool_blocks: dict[Any, _Block] = {}
        self.finish_reason: str | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cached_tokens: int | None = None
        self.response_id: str | None = None
        self.ended = False
        self.out: list[bytes] = [_event({"type": "message_start", "message": {
            "id": f"msg_{uuid.uuid4()}", "type": "message", "role": "assistant",
            "content": [], "model": model, "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0}}})]

    # -- blocks -----------------------------------------------------------------
    def _start(self, block: _Block) -> None:
        self.index += 1
        self.open = block
        start: dict[str, Any]
        if block.kind == "text":
            start = {"type": "text", "text": ""}
        else:
            block.id = block.id or new_tool_id()
            start = {"type": "tool_use", "id": block.id, "name": block.name or "", "input": {}}
        self.out.append(_event({"type": "content_block_start", "index": self.index,
                                "content_block": start}))

    def _close(self) -> None:
        """Close the open block.  A tool call's arguments were buffered: they go out whole,
        checked (and repaired) as a JSON object, before its content_block_stop; an argument-less
        call streams "" (or nothing): its input is {}.  Arguments that cannot become an
        object end the answer in an error event (issue 21 F)."""
        block = self.open
        if block is None:
            return
        self.open = None
        if block.kind == "tool_use":
            try:
                args = repair_arguments("".join(block.parts), block.name or "")
            except ToolArgumentsError as exc:  # no content_block_stop, no message_stop
                self.ended = True
                self.out.append(error_event(BAD_TOOL_ARGUMENTS_ERROR, exc.message))
                return
            block.parts = [args]
            block.sent_args = True
            self.out.append(_json_delta(self.index, args))
        self.out.append(_block_stop(self.index))

    def _send_whole(self, block: _Block) -> None:
        self._start(block)
        if block.kind == "text":
            self.out.append(_text_delta(self.index, "".join(block.parts)))
        self._close()

    def _text(self, text: str) -> None:
        open_ = self.open
        if open_ is not None and open_.kind == "text":
            open_.parts.append(text)
            self.out.append(_text_delta(self.index, text))
            return
        if open_ is None:
            block = _Block("text", None)
            self.blocks.append(block)
            block.parts.append(text)
            self._start(block)
            self.out.append(_text_delta(self.index, text))
            return
        # a tool call is open: this text is a later block
        last = self.held[-1] if self.held else None
        if last is None or last.kind != "text":
            last = _Block("text", None)
            self.blocks.append(last)
            self.held.append(last)
        last.parts.append(text)

    def _tool(self, position: int, call: Mapping[str, Any]) -> None:
        key = call.get("index")
        if key is None:
            key = position
        fn = call.get("function") or {}
        args = fn.get("arguments") or ""
        block = self.tool_blocks.get(key)
        if block is None:
            block = self.tool_blocks[key] = _Block("tool_use", key)
            self.blocks.append(block)
            if self.open is not None and self.open.kind == "text":
                self._close()  # text before a tool call never resumes in the same block
            if self.open is None:
                block.id, block.name = call.get("id") or None, fn.get("name") or None
                self._start(block)
            else:
                self.held.append(block)
        if call.get("id") and block.id is None:
            block.id = call["id"]
        if fn.get("name") and block.name is None:
            block.name = fn["name"]
        if args:
            # Buffered until the call's block closes (_close): its input must be a complete
            # JSON object before content_block_stop.  Cerebras sends each call whole in one
            # delta, so nothing waits there; OpenAI-style servers stream pieces.
            block.parts.append(args)

    # -- input ------------------------------------------------------------------
    def feed(self, chunk: Mapping[str, Any]) -> None:
        """Translate one chunk (OpenAI chat.completion.chunk as a dict); ``take`` the events."""
        if self.ended:  # an error event already ended the answer
            return
        if self.response_id is None and chunk.get("id"):
            self.response_id = chunk["id"]
        usage = chunk.get("usage")
        if usage:
            self.prompt_tokens = usage.get("prompt_tokens") or self.prompt_tokens
            self.completion_tokens = usage.get("completion_tokens") or self.completion_tokens
            cached = cached_tokens(usage)
            if cached is not None:
                self.cached_tokens = cached
        pending = len(self.out)
        thinking = False
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                self._text(content)
            for position, call in enumerate(delta.get("tool_calls") or ()):
                self._tool(position, call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            thinking = thinking or bool(delta.get("reasoning"))
        if len(self.out) > pending:
            self.last_event_at = self.clock()
        elif thinking and self.clock() - self.last_event_at >= PING_INTERVAL:
            self.out.append(_event({"type": "ping"}))
            self.last_event_at = self.clock()

    def finish(self, upstream_finished: bool | None = None) -> list[bytes]:
        """The closing events; an error event if the upstream never finished the answer.

        ``upstream_finished`` overrides what the chunks said (LiteLLM's own wrapper
        invents a finish_reason "stop" for a stream that simply ended).
        """
        finished = self.finish_reason is not None if upstream_finished is None else upstream_finished
        if not finished:
            return self.fail(TRUNCATED_STREAM_ERROR, TRUNCATED_STREAM_MESSAGE)
        if self.ended:
            return self.take()
        self._close()
        for block in self.held:
            if self.ended:  # a call's arguments could not be repaired: the error event is out
                return self.take()  # type: ignore[unreachable]  # _close() and _send_whole() may end it
            self._send_whole(block)
        self.held = []
        if self.ended:
            return self.take()  # type: ignore[unreachable]  # _send_whole() may end it
        self.ended = True
        if self.index < 0:  # an empty answer is still one (empty) text block
            self._send_whole(_Block("text", None))
        stop = STOP_REASONS.get(self.finish_reason or "stop", "end_turn")
        if self.tool_blocks and stop == "end_turn":
            stop = "tool_use"  # some servers say "stop" beside tool calls; Claude Code must run them
        self.out.append(_event({
            "type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": anthropic_usage(self.prompt_tokens, self.completion_tokens, self.cached_tokens)}))
        self.out.append(_event({"type": "message_stop"}))
        return self.take()

    def fail(self, error_type: str, message: str) -> list[bytes]:
        """An error event (no message_stop): Claude Code discards the partial answer."""
        if self.ended:
            return self.take()
        self.ended = True
        self.out.append(error_event(error_type, message))
        return self.take()

    def take(self) -> list[bytes]:
        out, self.out = self.out, []
        return out

    # -- what the logging callbacks get ------------------------------------------
    def text(self) -> str | None:
        parts = [p for b in self.blocks if b.kind == "text" for p in b.parts]
        return "".join(parts) if parts else None

    def tool_calls(self) -> list[dict[str, Any]]:
        return [{"id": b.id or "", "type": "function",
                 "function": {"name": b.name or "", "arguments": "".join(b.parts)}}
                for b in self.blocks if b.kind == "tool_use"]


# --------------------------------------------------------------------------
# Non-streaming
# --------------------------------------------------------------------------

def tool_input(arguments: Any, name: str = "") -> Any:
    """A tool call's input: "" (a tool without parameters) is {}; repaired when the defect
    is unambiguous (repair_arguments).

    Anything else raises ToolArgumentsError (a ValueError with status_code 529): Claude Code
    gets an error to retry rather than a tool run with made-up input.
    """
    if isinstance(arguments, dict):
        return arguments
    return json.loads(repair_arguments(arguments, name))


def anthropic_content(text: str | None, tool_calls: Any) -> list[dict[str, Any]]:
    """Anthropic content blocks of one OpenAI message: its text first, then each call."""
    blocks: list[dict[str, Any]] = []
    if text:
        blocks.append({"type": "text", "text": text})
    for call in tool_calls or ():
        fn = call["function"]
        blocks.append({"type": "tool_use", "id": call.get("id") or new_tool_id(),
                       "name": fn.get("name") or "", "input": tool_input(fn.get("arguments"), fn.get("name") or "")})
    return blocks


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

def anthropic_error_type(status: int) -> str:
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "api_error" if status >= 500 or status < 400 else "invalid_request_error"


# LiteLLM wraps the upstream's words: "litellm.RateLimitError: RateLimitError:
# CerebrasException - {body}".
_LITELLM_PREFIX = re.compile(r"^(?:litellm\.\w+: )?(?:\w+Error: )?(?:\w+Exception - )?")


def upstream_error_message(raw: str) -> str:
    """The upstream's own message out of LiteLLM's exception text.

    Cerebras answers a flat ``{"message", "type", "param", "code"}``, OpenAI-compatible
    servers a nested ``{"error": {"message", ...}}``; anything else is kept as written.
    """
    text = _LITELLM_PREFIX.sub("", (raw or "").strip(), count=1).strip()
    start = text.find("{")
    if start >= 0:
        try:
            body, _ = json.JSONDecoder().raw_decode(text[start:])
        except ValueError:
            body = None
        if isinstance(body, dict):
            error = body.get("error")
            inner: dict[Any, Any] = error if isinstance(error, dict) else body
            for key in ("message", "detail"):
                value = inner.get(key)
                if isinstance(value, str) and value.strip():
                    return value.strip()
    return text or "upstream error"


def _seconds(value: Any) -> float | None:
    """Seconds from a header value: "7", "33.5", "1m2s", "250ms" (Cerebras and OpenAI styles)."""
    text = str(value).strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?"
                         r"(?:(\d+(?:\.\d+)?)ms)?", text)
    if not text or parts is None:
        return None
    h, m, s, ms = (float(p) if p else 0.0 for p in parts.groups())
    return h * 3600 + m * 60 + s + ms / 1000


# Where a 429's wait comes from, first found wins: the upstream's own Retry-After, then
# Cerebras' per-minute token and request windows (the per-day ones would mean hours).
RETRY_AFTER_HEADERS = ("retry-after", "x-ratelimit-reset-tokens-minute",
                       "x-ratelimit-reset-requests-minute", "x-ratelimit-reset-tokens",
                       "x-ratelimit-reset-requests")


def retry_after(headers: Mapping[str, Any] | None) -> str | None:
    """The Retry-After (whole seconds, at least 1) for an upstream 429, or None."""
    if not headers:
        return None
    lower = {str(k).lower(): v for k, v in dict(headers).items()}
    for name in RETRY_AFTER_HEADERS:
        if name in lower:
            seconds = _seconds(lower[name])
            if seconds is not None and seconds >= 0:
                return str(max(1, int(-(-seconds // 1))))
    return None


def anthropic_error(status: int, raw_message: str,
                    headers: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """(body, headers) of the HTTP error response Claude Code gets for an upstream error."""
    body = {"type": "error", "error": {"type": anthropic_error_type(status),
                                       "message": upstream_error_message(raw_message)}}
    out_headers: dict[str, str] = {}
    wait = retry_after(headers) if status in (429, 503, 529) else None
    if wait is not None:
        out_headers["retry-after"] = wait
    return body, out_headers
