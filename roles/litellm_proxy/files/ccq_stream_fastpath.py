"""Fast relay of OpenAI-compatible streams to Anthropic /v1/messages SSE for LiteLLM 1.74.0.post2.

Part of ccq: deployed beside custom_callbacks.py.  ccq_litellm_patches.py loads
this file, checks it with its shared guard and calls install() after its own
patches (install_stream_fastpath).  Turned off with CCQ_STREAM_FASTPATH=0.

WHY: on LiteLLM 1.74.0.post2 every upstream chunk of a /v1/messages stream goes
through the openai SDK (pydantic ChatCompletionChunk) and CustomStreamWrapper
(ModelResponseStream + Delta + StreamingChoices objects, a 100-chunk list
comprehension in safety_checker, eagerly formatted debug f-strings), then once more
through the proxy's per-item generator and Starlette's middleware stream.  That
costs ~200-600 us of CPU per one-token chunk, so the proxy tops out near 1,500
chunks/s, slower than Cerebras itself.

WHAT: install() wraps AnthropicAdapter.translate_completion_output_params_streaming
(the single function that turns the CustomStreamWrapper into Anthropic SSE bytes,
already ccq's own: ccq_litellm_patches item m) so that, for the openai-compatible path
only (cerebras & co.), the upstream SSE bytes are read directly from the
not-yet-started openai AsyncStream, checked against the grammar OpenAI-compatible
servers send (text deltas, tool-call deltas, finish, usage) and fed as dicts to the
same translator LiteLLM's path uses (ccq_anthropic_wire.AnthropicStream).  Events
that arrive in the same upstream read are written in one send (no waiting, so no
added latency).

SAFETY:
* Exact version guard (ccq_litellm_patches' own, shared with its patches): LiteLLM
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
import datetime
import json
import logging
from typing import Any, AsyncIterator, Callable, Dict, List, Optional

try:  # orjson ships with litellm[proxy]; it parses JSON exactly like json.loads for valid input
    import orjson as _orjson

    _loads: Callable[[bytes], Any] = _orjson.loads
except ImportError:  # pragma: no cover
    _loads = json.loads

# ccq_litellm_patches.source_hash (sha256, first 16 hex, of inspect.getsource()) of every
# function whose behaviour the fast path reproduces, recorded from litellm 1.74.0.post2 +
# openai 1.99.9; ccq_litellm_patches.check_stream_fastpath compares them before install().
FINGERPRINTS: Dict[str, str] = {
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

_log = logging.getLogger("ccq.stream_fastpath")

_installed: Optional[str] = None
_wire: Any = None  # ccq_anthropic_wire, given by install()
_orig_translate: Optional[Callable[..., Any]] = None
_opts: Dict[str, Any] = {"coalesce": True, "debug": False}
STATS: Dict[str, int] = {"fast": 0, "fallback_ineligible": 0, "bailout": 0, "bailout_mismatch": 0}


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
    shared translator (ccq_anthropic_wire.AnthropicStream), exactly as LiteLLM's own path
    hands it the chunks of its CustomStreamWrapper.  Raises _Bail for anything else, so
    LiteLLM's pipeline decides it (reasoning deltas, logprobs, several choices, error
    events, a loop of identical chunks that LiteLLM stops, ...)."""

    def __init__(self, stream: Any, repeat_limit: int):
        self.stream = stream
        self.repeat_limit = repeat_limit
        self.run_value: Any = None  # CustomStreamWrapper.safety_checker: run of identical content
        self.run_len = 0
        self.fingerprint: Optional[str] = None
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


def _patched_translate(self: Any, completion_stream: Any, model: str) -> Any:
    try:
        ok = _eligible(completion_stream)
    except Exception:  # never let the fast path break a request
        _log.exception("ccq fastpath eligibility check failed")
        ok = False
    if not ok:
        STATS["fallback_ineligible"] += 1
        _trace("stock path: stream not eligible")
        return _orig_translate(self, completion_stream, model)  # type: ignore[misc]
    STATS["fast"] += 1
    _trace("fast path: stream relayed")
    return _fast_stream(self, completion_stream, model)


def _trace(message: str) -> None:
    """One line per stream, only with CCQ_STREAM_FASTPATH=debug (never any content)."""
    if _opts["debug"]:
        _log.info("ccq fastpath: %s", message)


# Random per response: the message id, and the tool ids made up for calls that came without one.
_RANDOM_IDS = None


def _normalise(ev: bytes) -> bytes:
    """Blank out the random parts (message id, generated tool ids) for the replay self-check."""
    import re
    global _RANDOM_IDS
    if _RANDOM_IDS is None:
        _RANDOM_IDS = re.compile(rb'"msg_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"'
                                 rb'|"toolu_[0-9a-f]{24}"')
    return _RANDOM_IDS.sub(b'"<random id>"', ev)


def _events(blob: bytes) -> List[bytes]:
    """The SSE events in ``blob`` (JSON data lines hold no raw newline)."""
    return [e + b"\n\n" for e in blob.split(b"\n\n") if e]


async def _fast_stream(adapter: Any, cs: Any, model: str) -> AsyncIterator[bytes]:
    import litellm

    resp = cs.completion_stream.response
    byte_iter = resp.aiter_bytes()
    consumed: List[bytes] = []
    stream = _wire.AnthropicStream(model)
    grammar = _Grammar(stream, int(litellm.REPEATED_STREAMING_CHUNK_LIMIT))
    coalesce = _opts["coalesce"]
    sent: List[bytes] = []  # events already given to the client (kept only for the bail-out self-check)
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
                        if grammar.done:
                            break
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
            except Exception as exc:  # the connection broke mid-answer (closed below, never reused)
                _log.warning("ccq fastpath: upstream stream broke off (%s)", type(exc).__name__)
                yield b"".join(stream.fail(_wire.TRUNCATED_STREAM_ERROR, _wire.TRUNCATED_STREAM_MESSAGE))
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
            STATS["bailout"] += 1
            _log.info("ccq fastpath: handing stream to LiteLLM (%s)", why)
            async for ev in _replay(adapter, cs, model, resp, consumed, byte_iter, sent):
                yield ev
            finished = True
    finally:
        if not finished:
            try:
                await resp.aclose()
            except Exception:
                pass


async def _replay(adapter: Any, cs: Any, model: str, resp: Any, consumed: List[bytes],
                  byte_iter: AsyncIterator[bytes], sent: List[bytes]) -> AsyncIterator[bytes]:
    """Run LiteLLM's own pipeline over every byte read so far plus the rest, and
    skip the events the client already has."""

    async def replay_bytes() -> AsyncIterator[bytes]:
        if consumed:
            yield b"".join(consumed)
        async for d in byte_iter:
            yield d

    resp.aiter_bytes = replay_bytes  # AsyncStream._iter_events() calls response.aiter_bytes()
    k = 0
    async for blob in _orig_translate(adapter, cs, model):  # type: ignore[misc]
        fresh = []
        for ev in _events(blob):
            if k < len(sent):
                if _normalise(ev) != _normalise(sent[k]):
                    STATS["bailout_mismatch"] += 1
                    # Event index only: the events carry the user's generated code.
                    _log.error("ccq fastpath: replay diverged at event %d", k)
                k += 1
                continue
            fresh.append(ev)
        if fresh:
            yield b"".join(fresh)


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
        setattr(last, "usage", litellm.Usage(prompt_tokens=stream.prompt_tokens,
                                             completion_tokens=stream.completion_tokens,
                                             total_tokens=stream.prompt_tokens + stream.completion_tokens))
        chunks.append(last)
        for c in chunks:  # chunk_creator() sets model_response.model = self.model on every chunk
            c.model = cs.model
        complete = litellm.stream_chunk_builder(chunks=chunks, messages=cs.messages)
        if complete is not None:
            asyncio.create_task(cs.async_cache_streaming_response(
                processed_chunk=complete.model_copy(deep=True), cache_hit=False))
        asyncio.create_task(cs.logging_obj.async_success_handler(
            complete, cache_hit=False, start_time=None, end_time=None))
        executor.submit(cs.logging_obj.success_handler, complete, cache_hit=False,
                        start_time=None, end_time=None)
    except Exception:  # logging must never break the client's stream
        _log.exception("ccq fastpath: success logging failed")


# ---------------------------------------------------------------------------
# What the guard checks, and install()
# ---------------------------------------------------------------------------

def reproduced_functions() -> Dict[str, Any]:
    """The LiteLLM/openai functions whose behaviour the fast path reproduces, by their
    FINGERPRINTS names (ccq_litellm_patches hashes and checks them)."""
    import openai._streaming as osm
    from litellm.litellm_core_utils import streaming_chunk_builder_utils as scb
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper as C
    from litellm.proxy import common_request_processing as crp

    return {
        "CustomStreamWrapper.__anext__": C.__anext__,
        "CustomStreamWrapper.chunk_creator": C.chunk_creator,
        "CustomStreamWrapper.handle_openai_chat_completion_chunk": C.handle_openai_chat_completion_chunk,
        "CustomStreamWrapper.return_processed_chunk_logic": C.return_processed_chunk_logic,
        "CustomStreamWrapper.is_chunk_non_empty": C.is_chunk_non_empty,
        "CustomStreamWrapper.is_delta_empty": C.is_delta_empty,
        "CustomStreamWrapper.safety_checker": C.safety_checker,
        "CustomStreamWrapper.finish_reason_handler": C.finish_reason_handler,
        "CustomStreamWrapper.model_response_creator": C.model_response_creator,
        "ChunkProcessor._calculate_usage_per_chunk": scb.ChunkProcessor._calculate_usage_per_chunk,
        "ChunkProcessor.calculate_usage": scb.ChunkProcessor.calculate_usage,
        "ProxyBaseLLMRequestProcessing.async_sse_data_generator":
            crp.ProxyBaseLLMRequestProcessing.async_sse_data_generator,
        "openai.AsyncStream.__stream__": osm.AsyncStream.__stream__,
        "openai.AsyncStream._iter_events": osm.AsyncStream._iter_events,
        "openai.SSEDecoder.decode": osm.SSEDecoder.decode,
        "openai.SSEDecoder._aiter_chunks": osm.SSEDecoder._aiter_chunks,
    }


def _enable_debug_log() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    _log.addHandler(handler)
    _log.setLevel(logging.INFO)


def install(wire: Any, mark: Callable[[Any, Any], Any], *, coalesce: bool = True, debug: bool = False) -> str:
    """Replace the adapter's streaming translation (idempotent); return a one-line description.

    Called by ccq_litellm_patches.install_stream_fastpath once its guard has passed and
    its own stream translation (item m) is in place.
    wire: the loaded ccq_anthropic_wire module (the translator both paths share).
    mark: ccq_litellm_patches.mark (ccq's patch marker).
    coalesce: write the events of one upstream read in one send (False: one send
    per event; Starlette's per-item middleware stream then caps the relay at 4-9k/s).
    debug: log one line per stream (fast, stock or bail-out) to stderr.
    """
    global _installed, _orig_translate, _wire
    if _installed is not None:
        return _installed
    _wire = wire
    from importlib.metadata import version

    from litellm.llms.anthropic.experimental_pass_through.adapters import transformation as tf

    _opts["coalesce"] = coalesce
    _opts["debug"] = debug
    if debug:
        _enable_debug_log()
    _orig_translate = tf.AnthropicAdapter.translate_completion_output_params_streaming
    # Marked like ccq's other patches, so a second load of the callback sees them in place.
    patched = mark(_patched_translate, _orig_translate)
    tf.AnthropicAdapter.translate_completion_output_params_streaming = patched  # type: ignore
    writes = "coalesced" if coalesce else "per-event"
    _installed = f"ccq stream fast path on litellm {version('litellm')} ({writes} writes)"
    return _installed


def uninstall() -> None:
    """Restore the original LiteLLM functions (tests)."""
    global _installed
    if _installed is None:
        return
    from litellm.llms.anthropic.experimental_pass_through.adapters import transformation as tf

    tf.AnthropicAdapter.translate_completion_output_params_streaming = _orig_translate  # type: ignore
    _installed = None
