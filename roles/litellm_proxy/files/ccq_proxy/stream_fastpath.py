"""Fast relay of OpenAI-compatible streams to Anthropic /v1/messages SSE for LiteLLM 1.74.0.post2.

Part of the ccq_proxy package.  litellm_patches.py checks it with the shared guard
(guard.py) and calls FAST_PATH.install() after its own patches
(install_stream_fastpath).  Turned off with CCQ_STREAM_FASTPATH=0.

WHY: on LiteLLM 1.74.0.post2 every upstream chunk of a /v1/messages stream goes
through the openai SDK (pydantic ChatCompletionChunk) and CustomStreamWrapper
(ModelResponseStream + Delta + StreamingChoices objects, a 100-chunk list
comprehension in safety_checker, eagerly formatted debug f-strings), then once more
through the proxy's per-item generator and Starlette's middleware stream.  That
costs ~200-600 us of CPU per one-token chunk, so the proxy tops out near 1,500
chunks/s, slower than Cerebras itself.

WHAT: install() wraps AnthropicAdapter.translate_completion_output_params_streaming
(the single function that turns the CustomStreamWrapper into Anthropic SSE bytes,
already ccq's own: litellm_patches item m) so that, for the openai-compatible path
only (cerebras & co.), the upstream SSE bytes are read directly from the
not-yet-started openai AsyncStream, checked against the grammar OpenAI-compatible
servers send (text deltas, tool-call deltas, finish, usage) and fed as dicts to the
same translator LiteLLM's path uses (anthropic_wire.AnthropicStream).  Events
that arrive in the same upstream read are written in one send (no waiting, so no
added latency).

SAFETY:
* Exact version guard (guard.py, shared with the patches): LiteLLM
  must be 1.74.0.post2 and openai 1.99.x, and the source of every LiteLLM/openai
  function whose behaviour is reproduced here (reproduced_functions()) must hash to
  its FINGERPRINTS entry; otherwise the proxy refuses to start (RuntimeError).
* Anything outside the modelled grammar (reasoning fields, logprobs, several
  choices, error events, a missing usage block, repeated-chunk loop detection,
  CR line endings, ...) makes the fast path bail out: it hands every byte read so
  far plus the rest of the upstream stream to LiteLLM's pipeline and skips the
  events it already sent, so the client sees what LiteLLM's path would have sent.
* A stream that breaks off or ends without a finish_reason ends in an Anthropic
  error event, never in message_stop: the partial answer is not taken as final.
* End-of-stream logging (success callbacks, router accounting, cache) is still
  called once per stream with a complete response built by litellm.stream_chunk_builder.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from . import anthropic_wire as wire
from .guard import mark

try:  # orjson ships with litellm[proxy]; it parses JSON exactly like json.loads for valid input
    import orjson as _orjson

    _loads: Callable[[bytes], Any] = _orjson.loads
except ImportError:  # pragma: no cover
    _loads = json.loads

# guard.source_hash (sha256, first 16 hex, of inspect.getsource()) of every function whose
# behaviour the fast path reproduces, recorded from litellm 1.74.0.post2 + openai 1.99.9;
# litellm_patches.check_stream_fastpath compares them before install().  A name is
# "<owner>.<attribute>", its owner one of REPRODUCED_OWNERS: reproduced_functions() finds
# each function by its name here, so a function is named once.
FINGERPRINTS: dict[str, str] = {
    "CustomStreamWrapper.__anext__": "e6b1d213913f5b44",
    "CustomStreamWrapper.chunk_creator": "105178844115164f",
    "CustomStreamWrapper.handle_openai_chat_completion_chunk": "87a20f36f418be20",
    "CustomStreamWrapper.return_processed_chunk_logic": "96155228d3145514",
    "CustomStreamWrapper.is_chunk_non_empty": "0e43cc642e71005b",
    "CustomStreamWrapper.is_delta_empty": "97cf7a9f0645c282",
    "CustomStreamWrapper.safety_checker": "6421bb9d1075d22c",
    "CustomStreamWrapper.finish_reason_handler": "fa14bc4c3890168c",
    "CustomStreamWrapper.model_response_creator": "526d43cfceeba418",
    "ChunkProcessor._calculate_usage_per_chunk": "a08acbd34e382878",
    "ChunkProcessor.calculate_usage": "3e7d77377a344cea",
    "ProxyBaseLLMRequestProcessing.async_sse_data_generator": "fa7eebf24232354a",
    "openai.AsyncStream.__stream__": "31fbc770ac9ce506",
    "openai.AsyncStream._iter_events": "4335561579a4e049",
    "openai.SSEDecoder.decode": "1d67b1b80412a816",
    "openai.SSEDecoder._aiter_chunks": "365d14e75c187f60",
}

# Where the owner of each FINGERPRINTS name lives: "module:class".
REPRODUCED_OWNERS: dict[str, str] = {
    "CustomStreamWrapper": "litellm.litellm_core_utils.streaming_handler:CustomStreamWrapper",
    "ChunkProcessor": "litellm.litellm_core_utils.streaming_chunk_builder_utils:ChunkProcessor",
    "ProxyBaseLLMRequestProcessing": "litellm.proxy.common_request_processing:ProxyBaseLLMRequestProcessing",
    "openai.AsyncStream": "openai._streaming:AsyncStream",
    "openai.SSEDecoder": "openai._streaming:SSEDecoder",
}

_log = logging.getLogger("ccq.stream_fastpath")


class _Bail(Exception):
    """The upstream sent something outside the modelled grammar."""


_FINISH_OK = frozenset({"stop", "length", "tool_calls"})
_CHOICE_KEYS = frozenset({"index", "delta", "finish_reason", "logprobs"})
# "reasoning": Cerebras' reasoning models stream their thinking there; neither path relays
# it (Claude Code would need signed thinking blocks), so it needs no hand-back.
_DELTA_KEYS = frozenset({"role", "content", "tool_calls", "refusal", "function_call", "reasoning"})
_TOOL_KEYS = frozenset({"index", "id", "type", "function"})
_FN_KEYS = frozenset({"name", "arguments"})


class _Grammar:
    """Checks each upstream chunk against what the fast path models, then hands it to the
    shared translator (anthropic_wire.AnthropicStream), exactly as LiteLLM's own path
    hands it the chunks of its CustomStreamWrapper.  Raises _Bail for anything else, so
    LiteLLM's pipeline decides it (reasoning deltas, logprobs, several choices, error
    events, a loop of identical chunks that LiteLLM stops, ...)."""

    def __init__(self, stream: Any, repeat_limit: int):
        self.stream = stream
        self.repeat_limit = repeat_limit
        self.run_value: Any = None  # CustomStreamWrapper.safety_checker: run of identical content
        self.run_len = 0
        self.fingerprint: str | None = None
        self.done = False

    def feed_data(self, data: bytes) -> None:
        if data.startswith(b"[DONE]"):
            self.done = True
            return
        try:
            obj = _loads(data)
        except Exception as e:  # json.loads in the openai SDK would raise: let it
            raise _Bail("json") from e
        if type(obj) is not dict or obj.get("error") or "provider_specific_fields" in obj:
            raise _Bail("top-level shape")
        choices = obj.get("choices")
        if type(choices) is not list or len(choices) > 1:
            raise _Bail("choices")
        usage = obj.get("usage")
        if usage is not None:
            if type(usage) is not dict:
                raise _Bail("usage")
            pt, ct = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if (pt is not None and type(pt) is not int) or (ct is not None and type(ct) is not int):
                raise _Bail("usage types")
        if "system_fingerprint" in obj:
            self.fingerprint = obj.get("system_fingerprint")
        if choices:
            self._check_choice(choices[0])
        self.stream.feed(obj)

    def _check_choice(self, ch: Any) -> None:
        if type(ch) is not dict or not ch.keys() <= _CHOICE_KEYS or ch.get("logprobs") is not None:
            raise _Bail("choice")
        d = ch.get("delta")
        if type(d) is not dict or not d.keys() <= _DELTA_KEYS:
            raise _Bail("delta keys")
        if d.get("refusal") is not None or d.get("function_call") is not None:
            raise _Bail("refusal/function_call")
        role = d.get("role")
        if role is not None and role != "assistant":
            raise _Bail("role")
        content = d.get("content")
        if content is not None and type(content) is not str:
            raise _Bail("content type")
        if d.get("reasoning") is not None and type(d["reasoning"]) is not str:
            raise _Bail("reasoning type")
        tcs = d.get("tool_calls")
        if tcs is not None:
            self._check_tools(tcs)
        fr = ch.get("finish_reason")
        if fr is not None and fr not in _FINISH_OK:
            raise _Bail("finish_reason")
        if self.stream.finish_reason is not None and (content or tcs):
            raise _Bail("content after finish")  # LiteLLM ends its stream at the finish
        if content:
            if content == self.run_value:
                self.run_len += 1
                if self.run_len >= self.repeat_limit and len(content) > 2:
                    raise _Bail("repeated chunk")  # LiteLLM raises; let it
            else:
                self.run_value, self.run_len = content, 1

    @staticmethod
    def _check_tools(tcs: Any) -> None:
        if type(tcs) is not list or not tcs:
            raise _Bail("tool_calls")
        for tc in tcs:
            if type(tc) is not dict or not tc.keys() <= _TOOL_KEYS:
                raise _Bail("tool_call keys")
            fn = tc.get("function")
            if type(fn) is not dict or not fn.keys() <= _FN_KEYS:
                raise _Bail("function")
            for v in (tc.get("id"), fn.get("name"), fn.get("arguments")):
                if v is not None and type(v) is not str:
                    raise _Bail("tool field type")
            if tc.get("type") not in (None, "function"):
                raise _Bail("tool type")
            i = tc.get("index")
            if i is not None and type(i) is not int:
                raise _Bail("tool index")


# ---------------------------------------------------------------------------
# The replacement for AnthropicAdapter.translate_completion_output_params_streaming
# ---------------------------------------------------------------------------

def _eligible(cs: Any) -> bool:
    import litellm
    import openai
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper

    if type(cs) is not CustomStreamWrapper or cs.custom_llm_provider != "openai":
        return False
    s = cs.completion_stream
    if type(s) is not openai.AsyncStream or type(s._decoder).__name__ != "SSEDecoder":
        return False
    resp = getattr(s, "response", None)
    if resp is None or resp.is_stream_consumed or resp.is_closed:
        return False
    return (
        cs.send_stream_usage is True and cs.sent_first_chunk is False and not cs.chunks
        and cs.is_function_call is False and cs.merge_reasoning_content_in_choices is False
        and not litellm.post_call_rules and cs.stream_options is not None
        and "text/event-stream" in resp.headers.get("content-type", "")
    )


# Random per response: the message id, and the tool ids made up for calls that came without one.
_RANDOM_IDS = re.compile(rb'"msg_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"'
                         rb'|"toolu_[0-9a-f]{24}"')


def _normalise(ev: bytes) -> bytes:
    """Blank out the random parts (message id, generated tool ids) for the replay self-check."""
    return _RANDOM_IDS.sub(b'"<random id>"', ev)


def _events(blob: bytes) -> list[bytes]:
    """The SSE events in ``blob`` (JSON data lines hold no raw newline)."""
    return [e + b"\n\n" for e in blob.split(b"\n\n") if e]


class StreamFastPath:
    """The fast path's state: whether it is installed, the translation it wraps, its
    options, and its counts (one per process: FAST_PATH)."""

    def __init__(self) -> None:
        self.description: str | None = None  # install()'s one line; None: not installed
        self.original: Callable[..., Any] | None = None  # the stream translation it wraps (item m)
        self.coalesce = True
        self.debug = False
        self.stats: dict[str, int] = {"fast": 0, "fallback_ineligible": 0, "bailout": 0, "bailout_mismatch": 0}

    def translate(self, adapter: Any, completion_stream: Any, model: str) -> Any:
        """The adapter's streaming translation: the fast relay for an eligible stream,
        else the translation it wraps."""
        try:
            ok = _eligible(completion_stream)
        except Exception:  # noqa: BLE001 - never let the fast path break a request
            _log.exception("ccq fastpath eligibility check failed")
            ok = False
        if not ok:
            self.stats["fallback_ineligible"] += 1
            self.trace("stock path: stream not eligible")
            return self.original(adapter, completion_stream, model)  # type: ignore[misc]
        self.stats["fast"] += 1
        self.trace("fast path: stream relayed")
        return self.relay(adapter, completion_stream, model)

    def trace(self, message: str) -> None:
        """One line per stream, only with CCQ_STREAM_FASTPATH=debug (never any content)."""
        if self.debug:
            _log.info("ccq fastpath: %s", message)

    async def relay(self, adapter: Any, cs: Any, model: str) -> AsyncIterator[bytes]:
        import litellm

        resp = cs.completion_stream.response
        byte_iter = resp.aiter_bytes()
        consumed: list[bytes] = []
        stream = wire.AnthropicStream(model)
        grammar = _Grammar(stream, int(litellm.REPEATED_STREAMING_CHUNK_LIMIT))
        coalesce = self.coalesce
        sent: list[bytes] = []  # events already given to the client (kept only for the bail-out self-check)
        finished = False
        try:
            out = stream.take()
            sent.extend(out)
            yield b"".join(out)
            buf = b""
            try:
                try:
                    async for data in byte_iter:
                        consumed.append(data)
                        if grammar.done:
                            continue  # the openai SDK drains whatever follows [DONE]
                        if b"\r" in data:
                            raise _Bail("CR line endings")
                        buf += data
                        *events, buf = buf.split(b"\n\n")
                        for raw in events:
                            if grammar.done:  # feed_data() below sets it
                                break  # type: ignore[unreachable]
                            if not raw:
                                continue
                            if raw.startswith(b"data: "):
                                payload = raw[6:]
                            elif raw.startswith(b"data:"):
                                payload = raw[5:]
                            else:
                                raise _Bail("non-data SSE field")
                            if b"\n" in payload:
                                raise _Bail("multi-line SSE event")
                            grammar.feed_data(payload)
                        out = stream.take()
                        if out:
                            if cs.logging_obj.completion_start_time is None:
                                cs.logging_obj._update_completion_start_time(
                                    completion_start_time=datetime.datetime.now())
                            sent.extend(out)
                            if coalesce:
                                yield b"".join(out)
                            else:
                                for ev in out:
                                    yield ev
                except _Bail:
                    raise
                except Exception as exc:  # noqa: BLE001 - the connection broke mid-answer (closed below, never reused)
                    _log.warning("ccq fastpath: upstream stream broke off (%s)", type(exc).__name__)
                    yield b"".join(stream.fail(wire.TRUNCATED_STREAM_ERROR, wire.TRUNCATED_STREAM_MESSAGE))
                    return
                if buf.strip() and not grammar.done and stream.finish_reason is not None:
                    raise _Bail("trailing partial event")
                if stream.finish_reason is not None and not (stream.prompt_tokens and stream.completion_tokens):
                    # LiteLLM counts the tokens itself (token_counter) when usage is missing
                    raise _Bail("usage missing")
                out = stream.finish()
                if stream.finish_reason is not None:
                    _log_success(cs, stream, grammar)
                else:
                    _log.warning("ccq fastpath: upstream stream ended without a finish_reason")
                sent.extend(out)
                finished = True
                if coalesce:
                    yield b"".join(out)
                else:
                    for ev in out:
                        yield ev
            except _Bail as why:
                self.stats["bailout"] += 1
                _log.info("ccq fastpath: handing stream to LiteLLM (%s)", why)
                async for ev in self.replay(adapter, cs, model, resp, consumed, byte_iter, sent):
                    yield ev
                finished = True
        finally:
            if not finished:
                with contextlib.suppress(Exception):  # closing is best effort: the stream is over
                    await resp.aclose()

    async def replay(self, adapter: Any, cs: Any, model: str, resp: Any, consumed: list[bytes],
                     byte_iter: AsyncIterator[bytes], sent: list[bytes]) -> AsyncIterator[bytes]:
        """Run LiteLLM's own pipeline over every byte read so far plus the rest, and
        skip the events the client already has."""

        async def replay_bytes() -> AsyncIterator[bytes]:
            if consumed:
                yield b"".join(consumed)
            async for d in byte_iter:
                yield d

        resp.aiter_bytes = replay_bytes  # AsyncStream._iter_events() calls response.aiter_bytes()
        k = 0
        async for blob in self.original(adapter, cs, model):  # type: ignore[misc]
            fresh = []
            for ev in _events(blob):
                if k < len(sent):
                    if _normalise(ev) != _normalise(sent[k]):
                        self.stats["bailout_mismatch"] += 1
                        # Event index only: the events carry the user's generated code.
                        _log.error("ccq fastpath: replay diverged at event %d", k)
                    k += 1
                    continue
                fresh.append(ev)
            if fresh:
                yield b"".join(fresh)

    def install(self, *, coalesce: bool = True, debug: bool = False) -> str:
        """Replace the adapter's streaming translation (idempotent); return a one-line description.

        Called by litellm_patches.install_stream_fastpath once its guard has passed and
        its own stream translation (item m) is in place.
        coalesce: write the events of one upstream read in one send (False: one send
        per event; Starlette's per-item middleware stream then caps the relay at 4-9k/s).
        debug: log one line per stream (fast, stock or bail-out) to stderr.
        """
        if self.description is not None:
            return self.description
        from importlib.metadata import version

        from litellm.llms.anthropic.experimental_pass_through.adapters import transformation as tf

        self.coalesce, self.debug = coalesce, debug
        if debug:
            _enable_debug_log()
        self.original = tf.AnthropicAdapter.translate_completion_output_params_streaming

        def relay_with_fast_path(adapter: Any, completion_stream: Any, model: str) -> Any:
            # A plain function, not the bound method: set on the class, it is called with the
            # adapter as its first argument, which the translation it wraps needs.
            return self.translate(adapter, completion_stream, model)

        # Marked like ccq's other patches, so a second load of the callback sees them in place.
        tf.AnthropicAdapter.translate_completion_output_params_streaming = mark(  # type: ignore[method-assign,unused-ignore]
            relay_with_fast_path, self.original)
        writes = "coalesced" if coalesce else "per-event"
        self.description = f"ccq stream fast path on litellm {version('litellm')} ({writes} writes)"
        return self.description

    def uninstall(self) -> None:
        """Restore the original LiteLLM functions (tests)."""
        if self.description is None:
            return
        from litellm.llms.anthropic.experimental_pass_through.adapters import transformation as tf

        tf.AnthropicAdapter.translate_completion_output_params_streaming = self.original  # type: ignore[method-assign,unused-ignore]
        self.description = None


FAST_PATH = StreamFastPath()


# The end-of-stream logging tasks _log_success starts, held until they are done: the event loop
# keeps only weak references to its tasks, so one nothing refers to may vanish before it ends.
_BACKGROUND_TASKS: set[asyncio.Task[Any]] = set()


def _in_background(coroutine: Coroutine[Any, Any, Any]) -> None:
    task = asyncio.create_task(coroutine)
    _BACKGROUND_TASKS.add(task)
    task.add_done_callback(_BACKGROUND_TASKS.discard)


def _log_success(cs: Any, stream: Any, grammar: _Grammar) -> None:
    """What CustomStreamWrapper.__anext__ does once the stream is exhausted:
    stream_chunk_builder() + async/sync success callbacks + streaming cache."""
    try:
        import litellm
        from litellm.litellm_core_utils.thread_pool_executor import executor

        if stream.response_id is not None:
            cs.response_id = stream.response_id
        if grammar.fingerprint is not None:
            cs.system_fingerprint = grammar.fingerprint
        chunks = []
        first = {"role": "assistant", "content": stream.text()}
        chunks.append(cs.model_response_creator(chunk={"choices": [{"index": 0, "delta": first}]}))
        for i, tc in enumerate(stream.tool_calls()):
            chunks.append(cs.model_response_creator(chunk={"choices": [{"index": 0, "delta": {
                "role": "assistant", "tool_calls": [dict(tc, index=i)]}}]}))
        last = cs.model_response_creator()
        last.choices[0].finish_reason = stream.finish_reason
        last.usage = litellm.Usage(prompt_tokens=stream.prompt_tokens, completion_tokens=stream.completion_tokens,
                                   total_tokens=stream.prompt_tokens + stream.completion_tokens)
        chunks.append(last)
        for c in chunks:  # chunk_creator() sets model_response.model = self.model on every chunk
            c.model = cs.model
        complete = litellm.stream_chunk_builder(chunks=chunks, messages=cs.messages)
        if complete is not None:
            _in_background(cs.async_cache_streaming_response(
                processed_chunk=complete.model_copy(deep=True), cache_hit=False))
        _in_background(cs.logging_obj.async_success_handler(
            complete, cache_hit=False, start_time=None, end_time=None))
        executor.submit(cs.logging_obj.success_handler, complete, cache_hit=False,
                        start_time=None, end_time=None)
    except Exception:  # noqa: BLE001 - logging must never break the client's stream
        _log.exception("ccq fastpath: success logging failed")


# ---------------------------------------------------------------------------
# What the guard checks
# ---------------------------------------------------------------------------

def reproduced_functions() -> dict[str, Any]:
    """The LiteLLM/openai functions whose behaviour the fast path reproduces, by their
    FINGERPRINTS names (litellm_patches hashes and checks them).  A name whose function is
    gone is left out: the guard then names it as changed."""
    import importlib

    functions = {}
    for name in FINGERPRINTS:
        owner_name, _, attribute = name.rpartition(".")
        module_name, _, class_name = REPRODUCED_OWNERS[owner_name].partition(":")
        function = getattr(getattr(importlib.import_module(module_name), class_name), attribute, None)
        if function is not None:
            functions[name] = function
    return functions


def _enable_debug_log() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    _log.addHandler(handler)
    _log.setLevel(logging.INFO)
