"""Fast relay of OpenAI-compatible streams to Anthropic /v1/messages SSE for LiteLLM 1.74.0.post2.

Part of ccq: deployed beside custom_callbacks.py, which loads this file by path
and calls install() from apply_litellm_patches() after its own patches (the
per-stream chunk_queue and the content-"" fix live there, once).
Turned off with CCQ_STREAM_FASTPATH=0.

WHY: on LiteLLM 1.74.0.post2 every upstream chunk of a /v1/messages stream goes
through the openai SDK (pydantic ChatCompletionChunk), CustomStreamWrapper
(ModelResponseStream + Delta + StreamingChoices objects, a 100-chunk list
comprehension in safety_checker, eagerly formatted debug f-strings) and the
Anthropic adapter's AnthropicStreamWrapper, then once more through the proxy's
per-item generator and Starlette's middleware stream.  That costs ~200-600 us of
CPU per one-token chunk, so the proxy tops out near 1,500 chunks/s, slower than
Cerebras itself.

WHAT: install() replaces AnthropicAdapter.translate_completion_output_params_streaming
(the single function that turns the CustomStreamWrapper into Anthropic SSE bytes)
with a version that, for the openai-compatible path only (cerebras & co.), reads the
upstream SSE bytes directly from the not-yet-started openai AsyncStream and runs a
small state machine that reproduces, event for event and byte for byte, what
CustomStreamWrapper + AnthropicStreamWrapper emit -- with ccq's item-j fix
applied (custom_callbacks.py: content "" beside a tool-call delta counts as
absent, so the arguments become input_json_delta) -- for the chunk shapes
OpenAI-compatible servers send (text deltas, tool-call deltas, finish, usage).
Events that arrive in the same upstream read are written in one send (no waiting,
so no added latency).

SAFETY:
* Exact version guard: LiteLLM must be 1.74.0.post2 and openai 1.99.x, and the
  source of every LiteLLM/openai function whose behaviour is reproduced here must
  hash to the recorded fingerprint; otherwise install() raises RuntimeError.
* Anything outside the modelled grammar (reasoning fields, logprobs, several
  choices, error events, a missing usage block, repeated-chunk loop detection,
  CR line endings, ...) makes the fast path bail out: it hands every byte read so
  far plus the rest of the upstream stream to LiteLLM's original pipeline and
  skips the events it already sent, so the client sees exactly what stock
  LiteLLM would have sent.
* End-of-stream logging (success callbacks, router accounting, cache) is still
  called once per stream with a complete response built by litellm.stream_chunk_builder.
"""
from __future__ import annotations

import asyncio
import datetime
import hashlib
import inspect
import json
import logging
import os
import uuid
from json.encoder import encode_basestring_ascii as _jstr
from typing import Any, AsyncIterator, Callable, Dict, List, Optional

try:  # orjson ships with litellm[proxy]; it parses JSON exactly like json.loads for valid input
    import orjson as _orjson

    _loads: Callable[[bytes], Any] = _orjson.loads
except ImportError:  # pragma: no cover
    _loads = json.loads

EXPECTED_LITELLM = "1.74.0.post2"
EXPECTED_OPENAI_PREFIX = "1.99."

# sha256 (first 16 hex) of inspect.getsource() of every function whose behaviour
# the fast path reproduces.  Recorded from litellm 1.74.0.post2 + openai 1.99.9.
FINGERPRINTS: Dict[str, str] = {
    "class AnthropicStreamWrapper": "464954a2bc443ae3",
    "AnthropicStreamWrapper.__init__": "888c50e7fce12ef0",
    "AdapterCompletionStreamWrapper.__init__": "7b85350c81417762",
    "AnthropicAdapter.translate_completion_output_params_streaming": "1e981576b2163246",
    "AnthropicStreamWrapper.__anext__": "e0438513b402ceb3",
    "AnthropicStreamWrapper.async_anthropic_sse_wrapper": "758505167f00e272",
    "AnthropicStreamWrapper._should_start_new_content_block": "516ef85588fc6e81",
    "Adapter.translate_streaming_openai_response_to_anthropic": "097c10994e71d932",
    "Adapter._translate_streaming_openai_chunk_to_anthropic": "b2e07f0a0c208a65",
    "Adapter._translate_streaming_openai_chunk_to_anthropic_content_block": "1d211be30910a4c6",
    "Adapter._translate_openai_finish_reason_to_anthropic": "0f33dabd1151f6aa",
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
_orig_translate: Optional[Callable[..., Any]] = None
_opts: Dict[str, Any] = {"coalesce": True, "debug": False}
# custom_callbacks.py marks its wrappers with this attribute (item j must be in place).
_CCQ_PATCH_MARK = "_ccq_patched"
STATS: Dict[str, int] = {"fast": 0, "fallback_ineligible": 0, "bailout": 0, "bailout_mismatch": 0}


class _Bail(Exception):
    """The upstream sent something outside the modelled grammar."""


# ---------------------------------------------------------------------------
# Anthropic SSE event encoders.  Formats are json.dumps() defaults
# (", " and ": " separators, ensure_ascii=True), as AnthropicStreamWrapper uses.
# ---------------------------------------------------------------------------

def _ev(obj: dict) -> bytes:
    return f"event: {obj['type']}\ndata: {json.dumps(obj)}\n\n".encode()


def _text_delta(idx: int, text: str) -> bytes:
    return (
        'event: content_block_delta\ndata: {"type": "content_block_delta", "index": %d, '
        '"delta": {"type": "text_delta", "text": %s}}\n\n' % (idx, _jstr(text))
    ).encode()


def _json_delta(idx: int, partial: str) -> bytes:
    return (
        'event: content_block_delta\ndata: {"type": "content_block_delta", "index": %d, '
        '"delta": {"type": "input_json_delta", "partial_json": %s}}\n\n' % (idx, _jstr(partial))
    ).encode()


def _block_stop(idx: int) -> bytes:
    return ('event: content_block_stop\ndata: {"type": "content_block_stop", "index": %d}\n\n' % idx).encode()


_ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
_FINISH_OK = frozenset({"stop", "length", "tool_calls"})
_CHOICE_KEYS = frozenset({"index", "delta", "finish_reason", "logprobs"})
_DELTA_KEYS = frozenset({"role", "content", "tool_calls", "refusal", "function_call"})
_TOOL_KEYS = frozenset({"index", "id", "type", "function"})
_FN_KEYS = frozenset({"name", "arguments"})


def _without_empty_text_beside_tools(content: Optional[str], tcs: Optional[list]) -> Optional[str]:
    """ccq's item-j fix, as custom_callbacks.py applies it to the stock path.

    Stock 1.74 checks ``delta.content is not None`` before ``delta.tool_calls``,
    so ``content: ""`` beside a tool-call delta became an empty text_delta and
    the arguments were lost.  The callback sets such a delta's content to None
    on the very chunk object CustomStreamWrapper also keeps in ``self.chunks``,
    so the logged response sees None too.  The routing decisions taken before
    that (is_chunk_non_empty, safety_checker) treat "" and None alike.
    """
    if content == "" and tcs:
        return None
    return content


def _map_finish_litellm(fr: str) -> str:
    """litellm.litellm_core_utils.core_helpers.map_finish_reason restricted to the grammar (identity)."""
    return fr


class _Translator:
    """Reproduces CustomStreamWrapper (openai branch, include_usage=True) feeding
    AnthropicStreamWrapper.__anext__ + async_anthropic_sse_wrapper, for the grammar
    checked in feed().  Raises _Bail for anything else."""

    def __init__(self, model: str, repeat_limit: int):
        self.model = model
        self.repeat_limit = repeat_limit
        # CustomStreamWrapper state
        self.received: Optional[str] = None
        self.intermittent: Optional[str] = None
        self.sent_last_chunk = False
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.run_value: Any = object()  # safety_checker: trailing run of identical delta.content
        self.run_len = 0
        self.first_p = True
        # AnthropicStreamWrapper state
        self.idx = 0
        self.btype = "text"
        self.bstart: dict = {"type": "text", "text": ""}
        self.sent_cb_finish = False
        self.holding: Optional[dict] = None
        # what the logging callbacks get at the end
        self.resp_id: Optional[str] = None
        self.fingerprint: Optional[str] = None
        self.content_parts: List[str] = []
        self.tools: Dict[int, dict] = {}
        self.last_chunk_finish: Optional[str] = None
        self.done = False
        self.out: List[bytes] = []

    # -- start --------------------------------------------------------------
    def start_events(self) -> List[bytes]:
        return [
            _ev({"type": "message_start", "message": {
                "id": "msg_{}".format(uuid.uuid4()), "type": "message", "role": "assistant",
                "content": [], "model": self.model, "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0}}}),
            _ev({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ]

    # -- CustomStreamWrapper.chunks bookkeeping (safety_checker + usage) -----
    def _appended(self, content: Any) -> None:
        if content == self.run_value and type(content) is type(self.run_value):
            self.run_len += 1
        else:
            self.run_value, self.run_len = content, 1

    def _safety_check(self) -> None:
        # safety_checker(): the last REPEATED_STREAMING_CHUNK_LIMIT chunks all carry the
        # same str content longer than 2 chars -> LiteLLM raises; let it do so itself.
        if self.run_len >= self.repeat_limit and isinstance(self.run_value, str) and len(self.run_value) > 2:
            raise _Bail("repeated chunk")

    # -- one upstream SSE event ------------------------------------------------
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
        if type(choices) is not list:
            raise _Bail("choices")
        usage = obj.get("usage")
        if usage is not None:
            if type(usage) is not dict:
                raise _Bail("usage")
            pt, ct = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if (pt is not None and type(pt) is not int) or (ct is not None and type(ct) is not int):
                raise _Bail("usage types")
            if pt:
                self.prompt_tokens = pt
            if ct:
                self.completion_tokens = ct
        cid = obj.get("id")
        if self.resp_id is None and isinstance(cid, str) and cid.strip():
            self.resp_id = cid
        if "system_fingerprint" in obj:
            self.fingerprint = obj.get("system_fingerprint")

        if not choices:
            # chunk_creator: no choices + include_usage -> returned as an empty chunk
            self.intermittent = None
            self._emit(None, None, None, usage is not None)
            return
        if len(choices) != 1:
            raise _Bail("n>1")
        ch = choices[0]
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
        tcs = d.get("tool_calls")
        if tcs is not None:
            self._check_tools(tcs)
        fr = ch.get("finish_reason")
        if fr is not None and fr not in _FINISH_OK:
            raise _Bail("finish_reason")

        # CustomStreamWrapper.chunk_creator / return_processed_chunk_logic
        self.intermittent = fr
        if fr:
            self.received = fr
        if content:  # is_chunk_non_empty
            self._safety_check()
            self._emit(content, tcs, None, usage is not None)
        elif self.received is not None:
            if self.sent_last_chunk:
                raise _Bail("chunk after final chunk")  # LiteLLM would end the stream here
            if tcs is None:  # is_delta_empty
                self.sent_last_chunk = True
                self._emit(None, None, _map_finish_litellm(self.received), usage is not None)
            else:
                self._emit(content, tcs, None, usage is not None)
        elif tcs is not None:
            self._emit(content, tcs, None, usage is not None)
        else:
            # dropped: nothing reaches the Anthropic wrapper; only a usage-bearing
            # chunk is remembered in CustomStreamWrapper.chunks
            if usage is not None:
                self._appended(content)
                self.last_chunk_finish = None

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

    # -- a chunk CustomStreamWrapper hands to AnthropicStreamWrapper ------------
    def _emit(self, content: Optional[str], tcs: Optional[list], finish: Optional[str], had_usage: bool) -> None:
        self.first_p = False
        content = _without_empty_text_beside_tools(content, tcs)
        self._appended(content)
        self.last_chunk_finish = finish
        # bookkeeping for the logged complete response (stream_chunk_builder)
        if content is not None:
            self.content_parts.append(content)
        if tcs is not None:
            for tc in tcs:
                i = tc.get("index")
                i = 0 if i is None else i
                t = self.tools.get(i)
                if t is None:
                    t = self.tools[i] = {"id": None, "name": None, "type": None, "args": []}
                if tc.get("id"):
                    t["id"] = tc["id"]
                if tc.get("type"):
                    t["type"] = tc["type"]
                fn = tc["function"]
                if fn.get("name"):
                    t["name"] = fn["name"]
                if fn.get("arguments"):
                    t["args"].append(fn["arguments"])
        self._anthropic(content, tcs, finish)

    def _anthropic(self, content: Optional[str], tcs: Optional[list], finish: Optional[str]) -> None:
        out = self.out
        new_block = False
        if finish is None:  # AnthropicStreamWrapper._should_start_new_content_block
            if content:
                bt = "text"
            elif tcs:
                bt = "tool_use"
            else:
                bt = "text"
            if bt != self.btype:
                self.btype = bt
                if bt == "text":
                    self.bstart = {"type": "text", "text": ""}
                else:
                    tc0 = tcs[0]  # type: ignore[index]
                    self.bstart = {"type": "tool_use", "id": tc0.get("id") or str(uuid.uuid4()),
                                   "name": tc0["function"].get("name") or "", "input": {}}
                self.idx += 1
                new_block = True
            # LiteLLMAnthropicMessagesAdapter.translate_streaming_openai_response_to_anthropic
            if content is not None:
                ev = _text_delta(self.idx, content)
            elif tcs is not None:
                ev = _json_delta(self.idx, "".join(
                    tc["function"]["arguments"] for tc in tcs if tc["function"].get("arguments") is not None))
            else:
                ev = _text_delta(self.idx, "")
            if new_block and not self.sent_cb_finish:
                out.append(_block_stop(max(self.idx - 1, 0)))
                out.append(_ev({"type": "content_block_start", "index": self.idx, "content_block": self.bstart}))
                out.append(ev)
                self.sent_cb_finish = False
            else:
                out.append(ev)
            return
        md = {"type": "message_delta", "delta": {"stop_reason": _ANTHROPIC_STOP.get(finish, "end_turn")},
              "usage": {"input_tokens": 0, "output_tokens": 0}}
        if not self.sent_cb_finish:
            out.append(_block_stop(self.idx))
            self.sent_cb_finish = True
            self.holding = md
        else:
            out.append(_ev(md))

    # -- upstream finished ------------------------------------------------------
    def end(self) -> None:
        if not self.sent_last_chunk:  # CustomStreamWrapper.finish_reason_handler
            self.sent_last_chunk = True
            self._anthropic_final(self.received or self.intermittent or "stop")
        if not self.prompt_tokens or not self.completion_tokens:
            # stream_chunk_builder would fall back to token_counter(); leave that to LiteLLM
            raise _Bail("usage missing")
        # the usage chunk CustomStreamWrapper returns after stream_chunk_builder()
        if self.btype != "text":
            self.btype, self.bstart = "text", {"type": "text", "text": ""}
            self.idx += 1
            new_block = True
        else:
            new_block = False
        usage = {"input_tokens": self.prompt_tokens, "output_tokens": self.completion_tokens}
        if self.holding is not None:
            merged = dict(self.holding)
            merged["usage"] = usage
            self.out.append(_ev(merged))
            self.holding = None
        elif new_block and not self.sent_cb_finish:
            raise _Bail("unmodelled end state")
        else:
            self.out.append(_text_delta(self.idx, ""))
        self.out.append(_ev({"type": "message_stop"}))

    def _anthropic_final(self, finish: str) -> None:
        # finish_reason_handler() output is not appended to CustomStreamWrapper.chunks
        self._anthropic(None, None, finish)

    def take(self) -> List[bytes]:
        out, self.out = self.out, []
        return out


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


_NORMALISE = None


def _normalise(ev: bytes) -> bytes:
    """Blank out the random parts (message id, generated tool ids) for the replay self-check."""
    import re
    global _NORMALISE
    if _NORMALISE is None:
        _NORMALISE = re.compile(rb'"(msg_)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"')
    return _NORMALISE.sub(b'"<uuid>"', ev)


async def _fast_stream(adapter: Any, cs: Any, model: str) -> AsyncIterator[bytes]:
    import litellm

    stream = cs.completion_stream
    resp = stream.response
    byte_iter = resp.aiter_bytes()
    consumed: List[bytes] = []
    tr = _Translator(model, int(litellm.REPEATED_STREAMING_CHUNK_LIMIT))
    coalesce = _opts["coalesce"]
    sent: List[bytes] = []  # events already given to the client (kept only for the bail-out self-check)
    finished = False
    try:
        for ev in tr.start_events():
            sent.append(ev)
            yield ev
        buf = b""
        try:
            async for data in byte_iter:
                consumed.append(data)
                if tr.done:
                    continue  # the openai SDK drains whatever follows [DONE]
                if b"\r" in data:
                    raise _Bail("CR line endings")
                buf += data
                *events, buf = buf.split(b"\n\n")
                for raw in events:
                    if tr.done:
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
                    tr.feed_data(payload)
                out = tr.take()
                if out:
                    if tr.first_p is False and cs.logging_obj.completion_start_time is None:
                        cs.logging_obj._update_completion_start_time(
                            completion_start_time=datetime.datetime.now())
                    sent.extend(out)
                    if coalesce:
                        yield b"".join(out)
                    else:
                        for ev in out:
                            yield ev
            if buf.strip() and not tr.done:
                raise _Bail("trailing partial event")
            tr.end()
            out = tr.take()
            _log_success(cs, tr)
            sent.extend(out)
            finished = True
            yield b"".join(out) if coalesce else out[0]
            if not coalesce:
                for ev in out[1:]:
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
    async for ev in _orig_translate(adapter, cs, model):  # type: ignore[misc]
        if k < len(sent):
            if _normalise(ev) != _normalise(sent[k]):
                STATS["bailout_mismatch"] += 1
                # Event index only: the events carry the user's generated code.
                _log.error("ccq fastpath: replay diverged at event %d", k)
            k += 1
            continue
        yield ev


def _log_success(cs: Any, tr: _Translator) -> None:
    """What CustomStreamWrapper.__anext__ does once the stream is exhausted:
    stream_chunk_builder() + async/sync success callbacks + streaming cache."""
    try:
        import litellm
        from litellm.litellm_core_utils.thread_pool_executor import executor

        if tr.resp_id is not None:
            cs.response_id = tr.resp_id
        if tr.fingerprint is not None:
            cs.system_fingerprint = tr.fingerprint
        chunks = []
        first = {"role": "assistant", "content": "".join(tr.content_parts) if tr.content_parts else None}
        chunks.append(cs.model_response_creator(chunk={"choices": [{"index": 0, "delta": first}]}))
        for i in sorted(tr.tools):
            t = tr.tools[i]
            tc = {"index": i, "id": t["id"], "type": t["type"],
                  "function": {"name": t["name"], "arguments": "".join(t["args"])}}
            chunks.append(cs.model_response_creator(
                chunk={"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [tc]}}]}))
        last = cs.model_response_creator()
        last.choices[0].finish_reason = tr.last_chunk_finish
        setattr(last, "usage", litellm.Usage(prompt_tokens=tr.prompt_tokens,
                                             completion_tokens=tr.completion_tokens,
                                             total_tokens=tr.prompt_tokens + tr.completion_tokens))
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
# Version guard and install()
# ---------------------------------------------------------------------------

def _targets() -> Dict[str, Any]:
    import openai._streaming as osm
    from litellm.litellm_core_utils import streaming_chunk_builder_utils as scb
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper as C
    from litellm.llms.anthropic.experimental_pass_through.adapters import streaming_iterator as si
    from litellm.llms.anthropic.experimental_pass_through.adapters import transformation as tf
    from litellm.proxy import common_request_processing as crp

    A = si.AnthropicStreamWrapper
    L = tf.LiteLLMAnthropicMessagesAdapter
    return {
        "class AnthropicStreamWrapper": A,
        "AnthropicStreamWrapper.__init__": A.__init__,
        "AdapterCompletionStreamWrapper.__init__": A.__mro__[1].__init__,
        # once installed, the class attribute is ours: fingerprint what we replaced
        "AnthropicAdapter.translate_completion_output_params_streaming":
            _orig_translate or tf.AnthropicAdapter.translate_completion_output_params_streaming,
        "AnthropicStreamWrapper.__anext__": A.__anext__,
        "AnthropicStreamWrapper.async_anthropic_sse_wrapper": A.async_anthropic_sse_wrapper,
        "AnthropicStreamWrapper._should_start_new_content_block": A._should_start_new_content_block,
        "Adapter.translate_streaming_openai_response_to_anthropic": L.translate_streaming_openai_response_to_anthropic,
        "Adapter._translate_streaming_openai_chunk_to_anthropic": L._translate_streaming_openai_chunk_to_anthropic,
        "Adapter._translate_streaming_openai_chunk_to_anthropic_content_block":
            L._translate_streaming_openai_chunk_to_anthropic_content_block,
        "Adapter._translate_openai_finish_reason_to_anthropic": L._translate_openai_finish_reason_to_anthropic,
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


def fingerprints() -> Dict[str, str]:
    """Current source hashes of the reproduced functions (used to (re)record FINGERPRINTS).

    inspect.getsource follows ``__wrapped__``, so custom_callbacks' own wrappers
    (which set it) hash as the LiteLLM originals they wrap.
    """
    return {k: hashlib.sha256(inspect.getsource(f).encode()).hexdigest()[:16] for k, f in _targets().items()}


def check_versions() -> None:
    """Raise RuntimeError unless this is exactly the LiteLLM/openai code the fast path reproduces."""
    from importlib.metadata import version

    lv, ov = version("litellm"), version("openai")
    if lv != EXPECTED_LITELLM:
        raise RuntimeError(f"ccq_stream_fastpath is written for litellm=={EXPECTED_LITELLM}, found {lv}; "
                           "set CCQ_STREAM_FASTPATH=0 or port it")
    if not ov.startswith(EXPECTED_OPENAI_PREFIX):
        raise RuntimeError(f"ccq_stream_fastpath needs openai {EXPECTED_OPENAI_PREFIX}x, found {ov}")
    now = fingerprints()
    bad = sorted(k for k, h in FINGERPRINTS.items() if now.get(k) != h)
    missing = sorted(set(now) - set(FINGERPRINTS))
    if bad or missing:
        raise RuntimeError(f"ccq_stream_fastpath: LiteLLM/openai source differs from {EXPECTED_LITELLM}: "
                           f"{bad + missing}")


def _require_item_j_fix() -> None:
    """The fast path reproduces the stock path *with* custom_callbacks' item-j fix.

    Without that fix the two paths would differ on content "" beside tool calls,
    and a bail-out replay would disagree with what the client already got.
    """
    from litellm.llms.anthropic.experimental_pass_through.adapters import transformation as tf

    fn = tf.LiteLLMAnthropicMessagesAdapter._translate_streaming_openai_chunk_to_anthropic
    if not getattr(fn, _CCQ_PATCH_MARK, False):
        raise RuntimeError("ccq_stream_fastpath: apply custom_callbacks.py's LiteLLM patches first "
                           "(the fast path reproduces their content-\"\" fix)")


def _enable_debug_log() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    _log.addHandler(handler)
    _log.setLevel(logging.INFO)


def install(*, coalesce: bool = True, debug: bool = False) -> str:
    """Replace the adapter's streaming translation (idempotent); return a one-line description.

    coalesce: write the events of one upstream read in one send (False: one send
    per event; Starlette's per-item middleware stream then caps the relay at 4-9k/s).
    debug: log one line per stream (fast, stock or bail-out) to stderr.
    Raises RuntimeError on any LiteLLM/openai version or source mismatch, or when
    custom_callbacks' item-j fix is not in place.
    """
    global _installed, _orig_translate
    if _installed is not None:
        return _installed
    check_versions()
    _require_item_j_fix()
    from litellm.llms.anthropic.experimental_pass_through.adapters import transformation as tf

    _opts["coalesce"] = coalesce
    _opts["debug"] = debug
    if debug:
        _enable_debug_log()
    _orig_translate = tf.AnthropicAdapter.translate_completion_output_params_streaming
    tf.AnthropicAdapter.translate_completion_output_params_streaming = _patched_translate  # type: ignore
    writes = "coalesced" if coalesce else "per-event"
    _installed = f"ccq stream fast path on litellm {EXPECTED_LITELLM} ({writes} writes)"
    return _installed


def uninstall() -> None:
    """Restore the original LiteLLM functions (tests)."""
    global _installed
    if _installed is None:
        return
    from litellm.llms.anthropic.experimental_pass_through.adapters import transformation as tf

    tf.AnthropicAdapter.translate_completion_output_params_streaming = _orig_translate  # type: ignore
    _installed = None
