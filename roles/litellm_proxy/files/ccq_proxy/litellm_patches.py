"""ccq's patches of LiteLLM 1.74.0.post2 internals: what Claude Code receives.

Part of the ccq_proxy package: hook.install calls ``apply_litellm_patches`` once when
the proxy loads the callback.  Each patch replaces or wraps a private LiteLLM function
whose behaviour was verified on LiteLLM 1.74.0.post2 only.  What Claude Code receives
is written by ``anthropic_wire.py``, on both relay paths:

k. An upstream error reached Claude Code as HTTP 500 (the adapter re-raises
   every error as a bare ValueError); the upstream's own error and status pass.
l. Speed: 1.74 spends ~0.2-0.6 ms of CPU per streamed chunk on /v1/messages,
   so it relays ~1,500 chunks/s, slower than Cerebras.  ``stream_fastpath.py``
   reads OpenAI-compatible upstream streams at the byte level and feeds m's
   translator, handing any unmodelled stream back to LiteLLM's own path.
m. Streams: LiteLLM's AnthropicStreamWrapper is replaced by
   anthropic_wire.AnthropicStream: one tool_use block per parallel tool call
   (1.74 merged them into one), and an Anthropic error event instead of
   message_stop when the upstream stream broke off before its finish.
n. Non-streamed answers keep their text beside their tool calls; arguments ""
   are input {} (1.74 dropped the text and answered "" with a 500).
o. Images reach the model as ``data:<media_type>;base64,<data>`` (1.74 wrote the
   source dict as text).
p. Errors of /v1/messages reach Claude Code in Anthropic's envelope with the
   upstream's own message, its Anthropic type and, for 429/503, a Retry-After
   (the upstream's, or Cerebras' x-ratelimit-reset-*): 1.74 wrote OpenAI's shape
   and dropped the upstream's headers.  The proxy itself retries nothing
   (``router_settings.num_retries: 0`` in the config): Claude Code does.
q. ``max_retries`` from the config reaches the openai SDK for Cerebras (1.74
   dropped it on that provider's branch, so the SDK retried each 429/5xx twice).
r. Quota pacing: the httpx client under LiteLLM's openai SDK (both relay paths)
   gets two event hooks from ``quota.py``: every upstream answer's
   ``x-ratelimit-*`` figures are kept per model, and a request that the last
   figures say will not fit waits for the window to turn (bounded, logged)
   instead of being sent to be refused.
s. Non-streamed usage as Anthropic counts it: ``input_tokens`` without the prompt
   tokens Cerebras read from its prefix cache, which become
   ``cache_read_input_tokens`` (1.74 reported every prompt token as input and
   dropped ``prompt_tokens_details.cached_tokens``); the streams do the same in
   anthropic_wire.
t. A client that leaves mid-answer (Esc in Claude Code) ends its Cerebras request within
   milliseconds, streamed or not, on both relay paths (uvicorn 0.29 told nobody the client
   had left, and 1.74's aiohttp transport never closed an abandoned response).

The guard
---------
guard.py's version guard, source fingerprint and patch marker serve these patches and
the stream fast path alike: LiteLLM must be exactly 1.74.0.post2, and each function a
patch replaces must hash to its ``PATCHED_SOURCES`` entry; otherwise the proxy refuses
to start (RuntimeError) and names the setting that runs without the patches.

Environment knobs
-----------------
``CCQ_LITELLM_PATCHES``     ``1`` (default): apply the response-side patches
                            and refuse to start on any LiteLLM version other
                            than 1.74.0.post2.  ``0``: skip both (for trying
                            a different LiteLLM version on purpose).
``CCQ_QUOTA_MAX_WAIT``      Longest wait for Cerebras' per-minute token quota,
                            in seconds (default 60; 0 turns pacing off).
``CCQ_QUOTA_STATE``         File the last quota figures are written to, for
                            ``ccq status`` (unset: none).
``CCQ_STREAM_FASTPATH``     ``1`` (default): install the stream fast path
                            (item l; refuses to start on other LiteLLM/openai
                            sources).  ``0``: LiteLLM's own stream path.
                            ``debug``: on, and one line per stream on stderr
                            saying which path relayed it (never any content).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from . import anthropic_wire as wire
from . import normalizer, quota, stream_fastpath
from .guard import PATCHED_OPENAI_SERIES, Guard, is_marked, mark

LOG = logging.getLogger("ccq.litellm_patches")

LITELLM_PATCHES_ENV = "CCQ_LITELLM_PATCHES"
STREAM_FASTPATH_ENV = "CCQ_STREAM_FASTPATH"
PATCHES_GUARD = Guard("ccq_proxy/litellm_patches.py",
                      f"{LITELLM_PATCHES_ENV}=0 to run without the response-side fixes")
STREAM_FASTPATH_GUARD = Guard("ccq_proxy/stream_fastpath.py",
                              f"{STREAM_FASTPATH_ENV}=0 to relay streams on LiteLLM's own path",
                              openai_series=PATCHED_OPENAI_SERIES)

# sha256 (first 16 hex, guard.source_hash) of each LiteLLM function a patch below replaces or
# wraps, recorded from litellm 1.74.0.post2: a different source refuses to start.
PATCHED_SOURCES: Mapping[str, str] = {
    "AnthropicAdapter.translate_completion_output_params_streaming": "1e981576b2163246",
    "Adapter._translate_openai_content_to_anthropic": "add7e1d9ee52e533",
    "Adapter.translate_anthropic_messages_to_openai": "f133be4213925aed",
    "Adapter.translate_openai_response_to_anthropic": "dabefd6b92676da5",
    "Handler.async_anthropic_messages_handler": "ad4fe2ddb8717c57",
    "anthropic_endpoints.anthropic_response": "3f09785cf59ddd38",
    "OpenAIChatCompletion.completion": "403b77f0949debdd",
    "BaseOpenAILLM._get_async_http_client": "9882b9f81294d004",
    "AiohttpResponseStream.__init__": "cd34c864f49124b6",
    # Not patched: the behaviours item t answers (a change to any of them needs a new look at t).
    "LiteLLMAiohttpTransport.handle_async_request": "d8c305137e9ce18a",
    "uvicorn.h11 RequestResponseCycle.send": "b5ee39c71ca38569",
    "starlette.StreamingResponse.__call__": "c8aff5c5f8eea2e5",
}


# --------------------------------------------------------------------------
# The patches (items k to r)
# --------------------------------------------------------------------------

def _chunk_as_dict(chunk: Any) -> dict[str, Any]:
    """A ModelResponseStream as the OpenAI chunk dict anthropic_wire reads."""
    choices = []
    for choice in getattr(chunk, "choices", None) or ():
        delta = getattr(choice, "delta", None)
        calls = []
        for call in getattr(delta, "tool_calls", None) or ():
            fn = getattr(call, "function", None)
            calls.append({"index": getattr(call, "index", None), "id": getattr(call, "id", None),
                          "function": {"name": getattr(fn, "name", None),
                                       "arguments": getattr(fn, "arguments", None)}})
        # LiteLLM names Cerebras' delta.reasoning "reasoning_content".
        choices.append({"delta": {"content": getattr(delta, "content", None), "tool_calls": calls,
                                  "reasoning": getattr(delta, "reasoning_content", None)},
                        "finish_reason": getattr(choice, "finish_reason", None)})
    usage = getattr(chunk, "usage", None)
    return {"id": getattr(chunk, "id", None), "choices": choices,
            "usage": _usage_as_dict(usage) if usage else None}


def _usage_as_dict(usage: Any) -> dict[str, Any]:
    """A LiteLLM Usage as OpenAI's usage dict, with Cerebras' prompt-cache count
    (``prompt_tokens_details.cached_tokens``) when the upstream gave one (issue 21 A)."""
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None)
    out: dict[str, Any] = {"prompt_tokens": getattr(usage, "prompt_tokens", 0),
                           "completion_tokens": getattr(usage, "completion_tokens", 0)}
    if isinstance(cached, int):
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    return out


def _stream_error(exc: BaseException) -> tuple[str, str]:
    """(Anthropic error type, message) for an exception that ended a stream: a 4xx keeps
    its type (Claude Code must not retry it); anything else is retryable, and says what
    the upstream said, if it said anything."""
    status = getattr(exc, "status_code", None)
    said = wire.upstream_error_message(str(getattr(exc, "message", "") or ""))
    if isinstance(status, int) and 400 <= status < 500:
        return wire.anthropic_error_type(status), said
    if said and said != "upstream error":
        return wire.TRUNCATED_STREAM_ERROR, f"{wire.TRUNCATED_STREAM_MESSAGE} (upstream: {said})"
    return wire.TRUNCATED_STREAM_ERROR, wire.TRUNCATED_STREAM_MESSAGE


def _translate_stream_with_ccq(original: Callable[..., Any]) -> Callable[..., Any]:
    """Item m: LiteLLM's own stream path translates with anthropic_wire.AnthropicStream.

    1.74's AnthropicStreamWrapper starts a new block only when the block *type* changes,
    so parallel tool calls became one tool_use block with the first call's id and the
    calls' arguments back to back; and a stream that broke off ended in message_stop
    (CustomStreamWrapper invents finish_reason "stop"; its aiohttp transport swallows
    ClientPayloadError).  The upstream's own finish is read from CustomStreamWrapper's
    ``received_finish_reason``.
    """

    def translate_completion_output_params_streaming(self: Any, completion_stream: Any, model: str) -> Any:
        async def relay() -> Any:
            stream = wire.AnthropicStream(model)
            yield b"".join(stream.take())
            try:
                async for chunk in completion_stream:
                    stream.feed(_chunk_as_dict(chunk))
                    out = stream.take()
                    if out:
                        yield b"".join(out)
            except Exception as exc:  # noqa: BLE001 - an upstream error or a broken connection mid-answer
                LOG.warning("ccq: upstream stream failed with %s", type(exc).__name__)
                yield b"".join(stream.fail(*_stream_error(exc)))
                return
            # A wrapper without received_finish_reason: the chunks' own finish_reason decides.
            finished = (completion_stream.received_finish_reason is not None
                        if hasattr(completion_stream, "received_finish_reason") else None)
            yield b"".join(stream.finish(upstream_finished=finished))

        return relay()

    return mark(translate_completion_output_params_streaming, original)


def _content_with_text_and_tools(original: Callable[..., Any]) -> Callable[..., Any]:
    """Item n: a non-streamed answer keeps its text beside its tool calls, and a call
    with arguments "" (a tool without parameters) has input {} (1.74 kept only the
    tool calls, and json.loads("") was an HTTP 500)."""

    def _translate_openai_content_to_anthropic(self: Any, choices: list[Any]) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        for choice in choices:
            message = choice.message
            calls = [{"id": c.id, "function": {"name": c.function.name, "arguments": c.function.arguments}}
                     for c in message.tool_calls or ()]
            blocks.extend(wire.anthropic_content(message.content, calls))
        return blocks

    return mark(_translate_openai_content_to_anthropic, original)


def _usage_with_cache_reads(original: Callable[..., Any]) -> Callable[..., Any]:
    """Item s (issue 21 A): a non-streamed answer's usage as Anthropic counts it.

    1.74 writes ``input_tokens = prompt_tokens`` and drops Cerebras'
    ``prompt_tokens_details.cached_tokens``; Anthropic's input_tokens exclude the tokens
    read from the prompt cache, which go in ``cache_read_input_tokens``.  The streamed
    paths count the same way (anthropic_wire.anthropic_usage)."""

    def translate_openai_response_to_anthropic(self: Any, response: Any) -> Any:
        out = original(self, response)
        usage = getattr(response, "usage", None)
        if usage is not None and isinstance(out, dict):
            raw = _usage_as_dict(usage)
            out["usage"] = wire.anthropic_usage(raw["prompt_tokens"] or 0, raw["completion_tokens"] or 0,
                                                wire.cached_tokens(raw))
        return out

    return mark(translate_openai_response_to_anthropic, original)


def _image_data_urls(original: Callable[..., Any]) -> Callable[..., Any]:
    """Item o: an image reaches the model as ``data:<media_type>;base64,<data>``.

    1.74 writes ``data:image;base64,{'type': 'base64', ...}`` (the source dict as text).
    The normalizer (item j of normalizer.py) leaves image blocks only for a model
    that takes images, and only at the top level of user turns, so the k-th image_url
    the adapter writes is the k-th image block of the request.
    """

    def translate_anthropic_messages_to_openai(self: Any, messages: list[Any]) -> list[Any]:
        out: list[Any] = original(self, messages)
        sources = [b["source"] for m in messages if m.get("role") == "user" and isinstance(m.get("content"), list)
                   for b in m["content"] if normalizer.is_image_block(b)]
        urls = iter(s["url"] if s["type"] == "url" else f"data:{s['media_type']};base64,{s['data']}"
                    for s in sources)
        for message in out:
            content = message.get("content") if message.get("role") == "user" else None
            for part in content if isinstance(content, list) else ():
                if isinstance(part, dict) and part.get("type") == "image_url":
                    part["image_url"] = {"url": next(urls, part["image_url"].get("url"))}
        return out

    return mark(translate_anthropic_messages_to_openai, original)


def upstream_error(exc: BaseException) -> BaseException | None:
    """The upstream error hidden inside the 1.74 adapter's ValueError, if any.

    The adapter catches every error of ``litellm.acompletion`` and raises
    ``ValueError("Error calling litellm.acompletion ...")`` inside its except
    block, so the original exception survives as ``__context__``.  The proxy
    takes the HTTP status from ``status_code`` and falls back to 500.
    """
    if not isinstance(exc, ValueError):
        return None
    cause = exc.__context__
    status = getattr(cause, "status_code", None)
    if isinstance(status, int) and 400 <= status < 600:
        return cause
    return None


def _pass_through_upstream_errors(original: Callable[..., Any]) -> Callable[..., Any]:
    """Item k: the adapter's async handler re-raises the upstream's own error (and status)."""

    async def async_anthropic_messages_handler(*args: Any, **kwargs: Any) -> Any:
        try:
            return await original(*args, **kwargs)
        except ValueError as exc:
            cause = upstream_error(exc)
            if cause is None:
                raise
            raise cause from None

    return mark(async_anthropic_messages_handler, original)


def _honour_max_retries(original: Callable[..., Any]) -> Callable[..., Any]:
    """Item q: ``max_retries`` reaches the openai SDK client for Cerebras too.

    1.74's completion() copies max_retries into optional_params only on its openai/azure
    branch; on the branch of cerebras and the other OpenAI-compatible providers the
    handler then pops its default of 2, so the SDK retried every 429 and 5xx twice
    (with backoff, each retry reserving max_tokens against Cerebras' quota again)
    whatever the config said.  The value asked for is in litellm_params.
    """

    def completion(self: Any, *args: Any, **kwargs: Any) -> Any:
        optional, asked = kwargs.get("optional_params"), (kwargs.get("litellm_params") or {}).get("max_retries")
        if isinstance(optional, dict) and "max_retries" not in optional and isinstance(asked, int):
            optional["max_retries"] = asked
        return original(self, *args, **kwargs)

    return mark(completion, original)


def _paced_http_client(original: Callable[[], Any], counters: Mapping[str, int] | None = None) -> Callable[[], Any]:
    """Item r: the httpx client LiteLLM gives the openai SDK, with ccq's quota hooks.

    Every Cerebras request of both relay paths goes through this client, and httpx
    calls its event hooks before a request is sent (so a wait delays the request,
    never a byte of an answer) and when an answer's headers arrive.
    """
    import asyncio
    import weakref

    book = quota.quota_book_from_env()
    # The wire writer's counts (tool arguments repaired) go to `ccq status` with the figures.
    book.counters = counters if counters is not None else {}
    sent_to: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()

    async def pace(request: Any) -> None:
        if not request.url.path.endswith("/chat/completions"):
            return
        try:
            body = json.loads(request.content)
        except (ValueError, TypeError, RuntimeError):  # RuntimeError: a streamed body
            return
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str):
            return
        sent_to[request] = model
        cost = quota.request_cost(body, len(request.content))
        book.count(quota.request_purpose(body), cost)
        wait = book.wait_before(model, cost)
        if wait > 0:
            LOG.warning("ccq: waiting %.1f s for Cerebras' per-minute token quota of %s "
                        "(this request reserves about %d tokens)", wait, model, cost)
            await asyncio.sleep(wait)
            book.wait_before(model, cost)  # the window turned: take this request's share

    async def record(response: Any) -> None:
        model = sent_to.get(response.request)
        if model is not None:
            book.record(model, response.headers)

    def client() -> Any:
        made = original()
        if made is not None and not getattr(made, "_ccq_paced", False):
            hooks = made.event_hooks
            made.event_hooks = {"request": [*hooks.get("request", []), pace],
                                "response": [*hooks.get("response", []), record]}
            made._ccq_paced = True  # litellm.aclient_session is one client for all
        return made

    return mark(client, original)


def _response_headers(exc: BaseException | None) -> Mapping[str, Any]:
    """The upstream response's headers that LiteLLM kept on its exception."""
    for candidate in (getattr(exc, "litellm_response_headers", None),
                      getattr(getattr(exc, "response", None), "headers", None)):
        if candidate:
            headers: Mapping[str, Any] = candidate
            return headers
    return {}


def _anthropic_error_responses(original: Callable[..., Any]) -> Callable[..., Any]:
    """Item p: /v1/messages errors in Anthropic's envelope, with Retry-After.

    1.74's endpoint turns every exception into ProxyException, which the proxy writes
    as OpenAI's ``{"error": {...}}`` and without the upstream's headers, so Claude Code
    saw no error type it knows and no Retry-After for a 429.  The ProxyException is
    raised inside the endpoint's except block: the upstream's exception is its
    ``__context__``.
    """
    from fastapi.responses import JSONResponse
    from litellm.proxy._types import ProxyException

    async def anthropic_response(**kwargs: Any) -> Any:
        try:
            return await original(**kwargs)
        except ProxyException as exc:
            try:
                status = int(exc.code)
            except (TypeError, ValueError):
                status = 500
            status = status if 400 <= status < 600 else 500
            body, headers = wire.anthropic_error(status, exc.message, _response_headers(exc.__context__))
            return JSONResponse(status_code=status, content=body, headers=headers)

    return mark(anthropic_response, original)


def _messages_routes() -> list[Any]:
    """The proxy's /v1/messages routes (FastAPI calls ``route.dependant.call``)."""
    from litellm.proxy.proxy_server import app

    return [r for r in app.routes if getattr(r, "path", "").endswith("/v1/messages")
            and getattr(getattr(r, "dependant", None), "call", None) is not None]


# Item t: the aiohttp responses LiteLLM opened for the /v1/messages request being served
# (a list per request; asyncio tasks LiteLLM starts for it inherit the context).
UPSTREAM_RESPONSES: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
    "ccq_upstream_responses", default=None)
# What a request whose client left before its answer began is "answered" with (nginx's
# "client closed request"); nobody receives it, see _end_when_client_leaves.
CLIENT_CLOSED_REQUEST = 499


def _recorded_upstream_responses(original: Callable[..., Any]) -> Callable[..., Any]:
    """Item t: every upstream response LiteLLM's aiohttp transport opens is recorded for
    the /v1/messages request it serves, so that the request can close it.

    1.74's transport hands the response to httpx as ``content=``, which httpx wraps in an
    AsyncIteratorByteStream whose aclose() does nothing: closing the httpx response (the
    openai SDK, the fast path) never reaches aiohttp, and a relay cancelled mid-stream
    leaves the connection open, so Cerebras went on generating into it to the end.
    """

    def __init__(self: Any, aiohttp_response: Any) -> None:  # noqa: N807 - replaces the class's __init__
        original(self, aiohttp_response)
        opened = UPSTREAM_RESPONSES.get()
        if opened is not None:
            opened.append(aiohttp_response)

    return mark(__init__, original)


def _end_when_client_leaves(original: Callable[..., Any]) -> Callable[..., Any]:
    """Item t: the /v1/messages route's ASGI app, ended as soon as its client disconnects.

    uvicorn 0.29 advertises ASGI spec 2.4 but returns silently from send() after a
    disconnect (0.28.0 raised ClientDisconnected; 0.28.1 reverted it), and Starlette 0.46's
    StreamingResponse, under spec 2.4, stops only when send() raises; while LiteLLM waits
    for a non-streamed answer nothing reads receive() at all.  So the relay read every
    interrupted answer to its end.  Here, once the endpoint has read the request body,
    receive() is watched for http.disconnect; one that comes before the answer is complete
    cancels the endpoint and closes the upstream responses it opened (cancelling alone
    can leave the relay's generators suspended, its upstream open until garbage collection).
    """
    import asyncio

    import anyio

    async def app(scope: Any, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        body_read, client_left = anyio.Event(), anyio.Event()
        answer_started = answer_complete = False

        async def receive_request() -> Any:
            if body_read.is_set():  # the watch below reads receive() from here on
                await client_left.wait()
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_read.set()
            return message

        async def send_answer(message: Any) -> None:
            nonlocal answer_started, answer_complete
            if message["type"] == "http.response.start":
                answer_started = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                answer_complete = True
            await send(message)

        opened: list[Any] = []
        opened_token = UPSTREAM_RESPONSES.set(opened)
        try:
            with anyio.CancelScope() as endpoint:
                async def end_when_client_leaves() -> None:
                    await body_read.wait()
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    client_left.set()
                    if not answer_complete:
                        endpoint.cancel()
                        for response in opened:
                            response.close()  # synchronous: the connection is closed now

                watch = asyncio.ensure_future(end_when_client_leaves())
                try:
                    await original(scope, receive_request, send_answer)
                finally:
                    watch.cancel()
        finally:
            UPSTREAM_RESPONSES.reset(opened_token)
        if endpoint.cancelled_caught:
            LOG.info("ccq: the client left before its answer was complete; its upstream request was ended")
            if not answer_started:
                # LiteLLM's BaseHTTPMiddleware (PrometheusAuthMiddleware) logs an ERROR "No
                # response returned." for an app that returns without one; uvicorn drops it.
                await send({"type": "http.response.start", "status": CLIENT_CLOSED_REQUEST, "headers": []})
                await send({"type": "http.response.body", "body": b""})

    return mark(app, original)



# --------------------------------------------------------------------------
# Applying them
# --------------------------------------------------------------------------

# The function item m replaces: the fast path (item l) wraps it in turn.
STREAM_TRANSLATION = "AnthropicAdapter.translate_completion_output_params_streaming"


def litellm_patches_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """CCQ_LITELLM_PATCHES: "0" turns the response-side patches off."""
    return environ.get(LITELLM_PATCHES_ENV, "1").strip() != "0"


def stream_fastpath_mode(environ: Mapping[str, str] = os.environ) -> str:
    """CCQ_STREAM_FASTPATH: "off" for "0", "debug" for "debug", else "on"."""
    raw = environ.get(STREAM_FASTPATH_ENV, "1").strip().lower()
    if raw == "0":
        return "off"
    return "debug" if raw == "debug" else "on"


def _patch_targets() -> dict[str, tuple[Any, str]]:
    """Each patched LiteLLM function: (owner, attribute)."""
    from litellm.llms.anthropic.experimental_pass_through.adapters import handler, transformation
    from litellm.llms.custom_httpx import aiohttp_transport
    from litellm.llms.openai.common_utils import BaseOpenAILLM
    from litellm.llms.openai.openai import OpenAIChatCompletion

    return {
        "AiohttpResponseStream.__init__": (aiohttp_transport.AiohttpResponseStream, "__init__"),
        "OpenAIChatCompletion.completion": (OpenAIChatCompletion, "completion"),
        "BaseOpenAILLM._get_async_http_client": (BaseOpenAILLM, "_get_async_http_client"),
        STREAM_TRANSLATION: (transformation.AnthropicAdapter, "translate_completion_output_params_streaming"),
        "Adapter._translate_openai_content_to_anthropic":
            (transformation.LiteLLMAnthropicMessagesAdapter, "_translate_openai_content_to_anthropic"),
        "Adapter.translate_anthropic_messages_to_openai":
            (transformation.LiteLLMAnthropicMessagesAdapter, "translate_anthropic_messages_to_openai"),
        "Adapter.translate_openai_response_to_anthropic":
            (transformation.LiteLLMAnthropicMessagesAdapter, "translate_openai_response_to_anthropic"),
        "Handler.async_anthropic_messages_handler":
            (handler.LiteLLMMessagesToCompletionTransformationHandler, "async_anthropic_messages_handler"),
    }


def patched_functions() -> dict[str, Callable[..., Any]]:
    """The LiteLLM functions the patches replace, by their PATCHED_SOURCES names
    (``source_hashes(patched_functions())`` (re)records PATCHED_SOURCES)."""
    functions = {name: getattr(owner, attr) for name, (owner, attr) in _patch_targets().items()}
    for route in _messages_routes()[:1]:
        functions["anthropic_endpoints.anthropic_response"] = route.dependant.call
    functions.update(_client_disconnect_behaviours())
    return functions


def _client_disconnect_behaviours() -> dict[str, Callable[..., Any]]:
    """The functions whose behaviour item t answers (see _end_when_client_leaves and
    _recorded_upstream_responses); not patched, only fingerprinted."""
    from litellm.llms.custom_httpx.aiohttp_transport import LiteLLMAiohttpTransport
    from starlette.responses import StreamingResponse
    from uvicorn.protocols.http.h11_impl import RequestResponseCycle

    return {"LiteLLMAiohttpTransport.handle_async_request": LiteLLMAiohttpTransport.handle_async_request,
            "uvicorn.h11 RequestResponseCycle.send": RequestResponseCycle.send,
            "starlette.StreamingResponse.__call__": StreamingResponse.__call__}


def check_stream_fastpath() -> None:
    """The shared guard over the fast path: LiteLLM 1.74.0.post2, openai 1.99.x, and the
    source of every function it reproduces as its ``FINGERPRINTS`` recorded it."""
    STREAM_FASTPATH_GUARD.require_version()
    STREAM_FASTPATH_GUARD.require_sources(stream_fastpath.FINGERPRINTS, stream_fastpath.reproduced_functions())


def install_stream_fastpath(environ: Mapping[str, str] = os.environ) -> str | None:
    """Item l, after m: returns the fast path's description, or None when off.

    Raises RuntimeError (the proxy does not start) on a LiteLLM/openai source
    mismatch, like the other patches: a silent mismatch could corrupt streams; and
    when item m is not in place: the fast path hands every stream it does not model
    to m's translation, and the client must not see two dialects in one answer.
    """
    mode = stream_fastpath_mode(environ)
    if mode == "off":
        return None
    check_stream_fastpath()
    owner, attr = _patch_targets()[STREAM_TRANSLATION]
    if not is_marked(getattr(owner, attr)):
        raise RuntimeError(f"{STREAM_FASTPATH_GUARD.what}: apply ccq's LiteLLM patches first "
                           "(the fast path hands unmodelled streams to their stream translation)")
    description = stream_fastpath.FAST_PATH.install(debug=mode == "debug")
    LOG.info("ccq: %s", description)
    return description


def apply_litellm_patches(litellm_version: str | None = None) -> bool:
    """Patch LiteLLM 1.74.0.post2 for items k to r; idempotent (False: already in place).

    litellm_version: the installed one unless given (tests).
    Refuses (RuntimeError) on any other version or source (PATCHES_GUARD).
    """
    PATCHES_GUARD.require_version(litellm_version)
    targets = _patch_targets()
    owner, attr = targets[STREAM_TRANSLATION]
    if is_marked(getattr(owner, attr)):
        return False  # a second load of the callback: everything is in place
    PATCHES_GUARD.require_sources(PATCHED_SOURCES, patched_functions())
    patches = {
        STREAM_TRANSLATION: _translate_stream_with_ccq,
        "Adapter._translate_openai_content_to_anthropic": _content_with_text_and_tools,
        "Adapter.translate_anthropic_messages_to_openai": _image_data_urls,
        "Adapter.translate_openai_response_to_anthropic": _usage_with_cache_reads,
        "Handler.async_anthropic_messages_handler": lambda f: staticmethod(_pass_through_upstream_errors(f)),
        "OpenAIChatCompletion.completion": _honour_max_retries,
        "BaseOpenAILLM._get_async_http_client": lambda f: staticmethod(_paced_http_client(f, wire.STATS)),
        "AiohttpResponseStream.__init__": _recorded_upstream_responses,
    }
    for name, patch in patches.items():
        owner, attr = targets[name]
        setattr(owner, attr, patch(getattr(owner, attr)))
    for route in _messages_routes():
        route.dependant.call = _anthropic_error_responses(route.dependant.call)
        route.app = _end_when_client_leaves(route.app)
    install_stream_fastpath()  # after m: the fast path hands unmodelled streams to it
    return True
