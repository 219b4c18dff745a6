"""ccq's LiteLLM proxy callback: make Claude Code 2.x requests acceptable to Cerebras.

Deployed verbatim beside the proxy's config.yaml, which loads it with
``litellm_settings.callbacks: custom_callbacks.proxy_handler_instance``.
Written for and tested against LiteLLM 1.74.0.post2 (with openai 1.99.x).

Why it exists
-------------
Claude Code speaks Anthropic's ``/v1/messages``.  LiteLLM 1.74 translates that
to OpenAI chat completions for the ``cerebras/`` provider with its beta
Anthropic adapter (``litellm/llms/anthropic/experimental_pass_through``), which
mistranslates much of what Claude Code 2.x sends.  Before the adapter runs,
``async_pre_call_hook`` rewrites the request (``normalize_request``) so that
the adapter produces what a strict OpenAI-compatible server accepts:

a. Top-level fields the provider does not take are removed: ``thinking``,
   ``context_management``, ``output_config``, ``top_k``, unknown fields, and
   OpenAI parameters outside ``CerebrasConfig.get_supported_openai_params``
   (the list is derived from LiteLLM at start-up, never hard-coded);
   ``cache_control`` goes everywhere.  ``stop_sequences`` becomes ``stop``.
b. ``system``-role messages inside ``messages`` are folded, in order, into the
   top-level system (the 1.74 adapter silently drops them).
c. A top-level ``system`` array becomes one string, without the per-request
   ``x-anthropic-billing-header:`` line (it would defeat prompt caching).
d. Text-only content lists become strings; tool_use, tool_result and image
   blocks stay blocks.
e. A tool_result's content becomes one string (the adapter emits one ``tool``
   message per text block, all with the same tool_call_id); an empty result
   gets a short placeholder.
f. Tool results come first in a user turn, other content follows in a
   separate user message (the adapter puts the text first, which OpenAI's
   "tool messages must follow tool_calls" rule forbids).  Consecutive
   same-role messages are merged first, as Anthropic's API itself does.
g. Tool definitions keep only name, description and input_schema (the adapter
   merges every other key, e.g. cache_control and defer_loading, into the JSON
   schema); server tools without input_schema are removed, and a tool_choice
   that no longer makes sense is dropped.
h. ``max_tokens`` is clamped to a ceiling (Cerebras reserves max_tokens
   against the rate limit before running a request; Claude Code asks 32000).
i. Only ``/v1/messages`` is touched: call_type ``"text_completion"`` in 1.74,
   ``"anthropic_messages"`` in later LiteLLM versions.

A malformed body (no messages, messages not a list, content neither string
nor list, blocks without a type, ...) passes through unchanged so LiteLLM
answers it as it would without ccq; the hook never raises.

On the response side, three narrow patches of LiteLLM 1.74.0.post2 internals
(``apply_litellm_patches``), keyed to that exact version:

j. A streamed chunk with ``content: ""`` beside a tool-call delta lost the
   tool arguments (Claude Code then ran the tool with ``input: {}``); the
   adapter's stream wrapper also kept its event queue in a class attribute
   shared by all concurrent streams.  Both fixed upstream later (1.75.8+).
k. An upstream 4xx reached Claude Code as HTTP 500 (the adapter re-raises
   every error as a bare ValueError), so Claude Code retried it for minutes;
   the original status now passes through.
l. Speed: 1.74 spends ~0.2-0.6 ms of CPU per streamed chunk on /v1/messages
   (pydantic objects per chunk, an O(100) repeat check, eagerly formatted debug
   strings, one middleware write per event), so it relays ~1,500 chunks/s,
   slower than Cerebras.  ``ccq_stream_fastpath.py`` (deployed beside this file)
   replaces the adapter's stream translation for OpenAI-compatible upstreams
   with a byte-level translator that emits the same events as the patched stock
   path (j included), and hands any unmodelled stream back to LiteLLM.

Authentication
--------------
``ccq_master_key_auth`` is the proxy's ``general_settings.custom_auth``: the
master key (LITELLM_MASTER_KEY) gets in, anything else gets 401.  Without it,
LiteLLM 1.74 running without a database answers a wrong key with
400 "No connected db.", which Claude Code does not read as an auth failure.

Environment knobs
-----------------
``CCQ_MAX_TOKENS_CEILING``  Positive integer ceiling for max_tokens
                            (default 16384).  Invalid values stop the proxy at
                            start-up with a message naming the variable.
``CCQ_LITELLM_PATCHES``     ``1`` (default): apply the response-side patches
                            and refuse to start on any LiteLLM version other
                            than 1.74.0.post2.  ``0``: skip both (for trying
                            a different LiteLLM version on purpose).
``CCQ_STREAM_FASTPATH``     ``1`` (default): install the stream fast path
                            (item l; refuses to start on other LiteLLM/openai
                            sources).  ``0``: LiteLLM's own stream path.
                            ``debug``: on, and one line per stream on stderr
                            saying which path relayed it (never any content).

The normalization functions are plain Python (no LiteLLM import), so they can
be unit-tested without LiteLLM installed; the parameter policy they need is
injected (``ParamPolicy``) and derived from LiteLLM by ``derive_param_policy``.
"""

from __future__ import annotations

import hmac
import importlib.util
import logging
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable, Mapping, NamedTuple

try:  # The proxy always has LiteLLM; plain-Python unit tests may not.
    from litellm.integrations.custom_logger import CustomLogger as _HookBase
except ImportError:  # pragma: no cover - exercised only without LiteLLM
    _HookBase = object  # type: ignore[assignment,misc]

LOG = logging.getLogger("ccq.custom_callbacks")

# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------

MAX_TOKENS_CEILING_ENV = "CCQ_MAX_TOKENS_CEILING"
DEFAULT_MAX_TOKENS_CEILING = 16384
LITELLM_PATCHES_ENV = "CCQ_LITELLM_PATCHES"
STREAM_FASTPATH_ENV = "CCQ_STREAM_FASTPATH"
STREAM_FASTPATH_FILE = "ccq_stream_fastpath.py"
PATCHED_LITELLM_VERSION = "1.74.0.post2"

# The model whose supported parameters are asked of LiteLLM's cerebras config.
# CerebrasConfig answers the same list for every model in 1.74.
DEFAULT_CEREBRAS_MODEL = "qwen-3-coder-480b"

# call_type values under which LiteLLM's proxy hands /v1/messages to
# async_pre_call_hook: 1.74 passes "text_completion"
# (proxy/anthropic_endpoints/endpoints.py); later versions pass
# CallTypes.anthropic_messages.value.  /v1/chat/completions arrives as
# "acompletion"/"completion" and the legacy /v1/completions as
# "atext_completion": those are left alone.
ANTHROPIC_MESSAGES_CALL_TYPES = frozenset({"text_completion", "anthropic_messages"})

BILLING_HEADER_PREFIX = "x-anthropic-billing-header:"

# OpenAI-style models stall or loop on an empty tool message.
EMPTY_TOOL_RESULT_PLACEHOLDER = "(no output)"

# --------------------------------------------------------------------------
# Which top-level fields survive
# --------------------------------------------------------------------------

# Keys that are the request itself; normalized, never dropped.
STRUCTURAL_KEYS = frozenset({"model", "messages", "system"})

# Every Anthropic Messages request field -> the OpenAI chat parameter it
# becomes on the way to the provider (None: it has no OpenAI counterpart).
# A field survives only when its counterpart is among the provider's
# supported parameters.  How the 1.74 adapter treats each one:
ANTHROPIC_FIELD_COUNTERPARTS: Mapping[str, str | None] = {
    "max_tokens": "max_tokens",  # passed through as is
    "stream": "stream",  # the adapter also adds stream_options
    "temperature": "temperature",
    "top_p": "top_p",
    "tools": "tools",  # translated to function tools
    "tool_choice": "tool_choice",  # translated (auto/any/tool)
    # Claude Code's metadata.user_id is a JSON string with its device id and session id;
    # the 1.74 adapter would forward it to Cerebras as `user`. Nothing upstream needs it.
    "metadata": None,
    # Renamed by ccq: the adapter forwards `stop_sequences` verbatim, a field
    # OpenAI servers do not know.
    "stop_sequences": "stop",
    # LiteLLM checks `thinking` as one of its OpenAI-side parameters and
    # raises UnsupportedParamsError (HTTP 500) when the provider lacks it.
    "thinking": "thinking",
    "service_tier": "service_tier",
    # No OpenAI counterpart; the adapter would forward them verbatim.
    "top_k": None,
    "context_management": None,
    "output_config": None,  # {effort}: not reasoning_effort's shape
    "output_format": None,  # structured output: not response_format's shape
    "container": None,
    "mcp_servers": None,
}

# Keys the LiteLLM 1.74 proxy itself adds to the request data before the hook
# (proxy/litellm_pre_call_utils.py) that are in none of LiteLLM's parameter
# lists used by derive_param_policy; LiteLLM consumes them.
PROXY_INTERNAL_KEYS = frozenset({"organization", "success_callback", "failure_callback"})

# LiteLLM's own exclusions when it decides which passed parameters must be
# supported by the provider (utils.PreProcessNonDefaultParams in 1.74), plus
# extra_headers, which completion() turns into HTTP headers.
_LITELLM_UNCHECKED = frozenset(
    {
        "model",
        "messages",
        "custom_llm_provider",
        "api_version",
        "drop_params",
        "allowed_openai_params",
        "additional_drop_params",
        "extra_headers",
    }
)


# A NamedTuple, not a dataclass: LiteLLM loads this file with
# importlib.util.spec_from_file_location without registering it in
# sys.modules, and dataclasses then fail on postponed annotations.
class ParamPolicy(NamedTuple):
    """What the provider takes, as LiteLLM sees it.

    supported: OpenAI parameters the provider accepts
        (``CerebrasConfig().get_supported_openai_params(model)``).
    checked: OpenAI parameters LiteLLM refuses with UnsupportedParamsError
        (HTTP 500) unless they are in ``supported``.
    internal: LiteLLM's own keys (routing, logging, proxy metadata); LiteLLM
        consumes them, so they are kept.  Any other unknown key would be
        forwarded verbatim into the upstream body, so it is dropped.
    """

    supported: frozenset[str]
    checked: frozenset[str]
    internal: frozenset[str]

    def keeps(self, key: str) -> bool:
        """True when a non-Anthropic top-level key may stay in the request."""
        if key in self.checked:
            return key in self.supported
        return key in self.supported or key in self.internal


def derive_param_policy(model: str = DEFAULT_CEREBRAS_MODEL) -> ParamPolicy:
    """Build the ParamPolicy from the installed LiteLLM's own tables."""
    import inspect

    import litellm
    from litellm.constants import DEFAULT_CHAT_COMPLETION_PARAM_VALUES
    from litellm.types.utils import all_litellm_params

    supported = frozenset(litellm.CerebrasConfig().get_supported_openai_params(model=model))
    checked = frozenset(DEFAULT_CHAT_COMPLETION_PARAM_VALUES) - _LITELLM_UNCHECKED - set(all_litellm_params)
    internal = (
        frozenset(all_litellm_params)
        | frozenset(inspect.signature(litellm.completion).parameters)
        | frozenset(inspect.signature(litellm.anthropic_messages).parameters)
        | PROXY_INTERNAL_KEYS
    ) - {"kwargs"}
    return ParamPolicy(supported=supported, checked=checked, internal=internal)


def max_tokens_ceiling_from_env(environ: Mapping[str, str] = os.environ) -> int:
    """Read CCQ_MAX_TOKENS_CEILING; a bad value fails loudly at start-up."""
    raw = environ.get(MAX_TOKENS_CEILING_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_TOKENS_CEILING
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{MAX_TOKENS_CEILING_ENV} must be a positive integer, got {raw!r}")
    return value


# --------------------------------------------------------------------------
# Well-formedness: anything else passes through unchanged
# --------------------------------------------------------------------------

_ROLES = frozenset({"user", "assistant", "system"})


def _is_typed_block_list(value: Any) -> bool:
    """A list of blocks that each have a type (and text blocks a string text)."""
    return isinstance(value, list) and all(
        isinstance(b, dict)
        and isinstance(b.get("type"), str)
        and (b["type"] != "text" or isinstance(b.get("text"), str))
        for b in value
    )


def _block_is_well_formed(block: Any) -> bool:
    if not isinstance(block, dict):
        return False
    kind = block.get("type")
    if not isinstance(kind, str):
        return False
    if kind == "text":
        return isinstance(block.get("text"), str)
    if kind == "tool_use":
        return isinstance(block.get("id"), str) and isinstance(block.get("name"), str)
    if kind == "tool_result":
        content = block.get("content")
        return isinstance(block.get("tool_use_id"), str) and (
            content is None or isinstance(content, str) or _is_typed_block_list(content)
        )
    return True


def _tool_is_well_formed(tool: Any) -> bool:
    return (
        isinstance(tool, dict)
        and isinstance(tool.get("name"), str)
        and ("input_schema" not in tool or isinstance(tool["input_schema"], dict))
        and ("description" not in tool or isinstance(tool["description"], str))
    )


def is_well_formed(data: Any) -> bool:
    """True when ``data`` has the Anthropic shape normalize_request relies on."""
    if not isinstance(data, dict):
        return False
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        return False
    for msg in messages:
        if not isinstance(msg, dict) or msg.get("role") not in _ROLES:
            return False
        content = msg.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            return False
        for block in content:
            if not _block_is_well_formed(block):
                return False
    system = data.get("system")
    if system is not None and not isinstance(system, str):
        if not isinstance(system, list):
            return False
        for block in system:
            if not (isinstance(block, dict) and block.get("type") == "text"
                    and isinstance(block.get("text"), str)):
                return False
    tools = data.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(map(_tool_is_well_formed, tools))):
        return False
    choice = data.get("tool_choice")
    if choice is not None and not (isinstance(choice, dict) and isinstance(choice.get("type"), str)):
        return False
    metadata = data.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        return False
    return True


# --------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------

def strip_billing_header(text: str) -> str:
    """Remove Claude Code's per-request ``x-anthropic-billing-header:`` line(s).

    The line carries a value that changes on every request; left in the system
    prompt it changes the prompt's first bytes and defeats prefix caching.
    """
    if BILLING_HEADER_PREFIX not in text:  # fast path: one C-level scan
        return text
    kept = [line for line in text.split("\n") if not line.lstrip().startswith(BILLING_HEADER_PREFIX)]
    return "\n".join(kept).strip("\n")


def _text_of_blocks(blocks: Iterable[dict[str, Any]]) -> list[str]:
    return [b["text"] for b in blocks if b.get("type") == "text" and isinstance(b.get("text"), str)]


def tool_result_text(content: Any) -> str:
    """One string for a tool_result's content.

    LiteLLM 1.74 turns each block of a list into its own ``tool`` message with
    the same tool_call_id (OpenAI rejects duplicates), and images become a
    broken ``data:image;base64,{...}`` string.  Non-text blocks are therefore
    named in a short note; the Cerebras models ccq targets read text only.
    """
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        parts = []
        for block in content:
            if block.get("type") == "text":
                parts.append(block.get("text", ""))
            else:
                parts.append(f"[{block.get('type')} content omitted: the model takes text only]")
        text = "\n".join(parts)
    else:
        text = ""
    return text if text.strip() else EMPTY_TOOL_RESULT_PLACEHOLDER


# --------------------------------------------------------------------------
# Blocks and messages
# --------------------------------------------------------------------------

# Thinking blocks have no OpenAI counterpart and the 1.74 adapter ignores
# them; dropping them lets a [thinking, text] turn fold into a string.
_DROPPED_BLOCK_TYPES = frozenset({"thinking", "redacted_thinking"})


def _clean_block(block: dict[str, Any]) -> dict[str, Any]:
    """A block without cache_control (Anthropic-only) and with a flat tool_result."""
    kind = block["type"]
    if kind == "text":
        return block if len(block) == 2 else {"type": "text", "text": block["text"]}
    if kind == "tool_use":
        return {"type": "tool_use", "id": block["id"], "name": block["name"],
                "input": block.get("input", {})}
    if kind == "tool_result":
        out = {"type": "tool_result", "tool_use_id": block["tool_use_id"],
               "content": tool_result_text(block.get("content"))}
        if "is_error" in block:
            out["is_error"] = block["is_error"]
        return out
    if "cache_control" in block:
        return {k: v for k, v in block.items() if k != "cache_control"}
    return block


def _collapse(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Text-only content lists become one string; others stay lists."""
    for block in blocks:
        if block["type"] != "text":
            return blocks
    return "\n".join(block["text"] for block in blocks)


def _as_blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _merge_same_role(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge consecutive same-role messages, as Anthropic's API does.

    Without this, a turn split across two user messages could still put text
    between an assistant's tool_calls and their tool messages.
    """
    merged: list[dict[str, Any]] = []
    for msg in messages:
        if merged and merged[-1]["role"] == msg["role"]:
            prev = merged[-1]
            merged[-1] = {"role": prev["role"],
                          "content": _as_blocks(prev["content"]) + _as_blocks(msg["content"])}
        else:
            merged.append(msg)
    return merged


def _emit(role: str, content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The message(s) for one turn: tool results first, in their own message.

    LiteLLM 1.74 emits a user turn's text *before* its tool messages; OpenAI
    requires tool messages directly after the assistant's tool_calls.  So a
    user turn holding tool_result blocks and anything else becomes two user
    messages: the tool results, then the rest.
    """
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    blocks = [_clean_block(b) for b in content if b["type"] not in _DROPPED_BLOCK_TYPES]
    if role == "user":
        results = [b for b in blocks if b["type"] == "tool_result"]
        if results and len(results) != len(blocks):
            rest = [b for b in blocks if b["type"] != "tool_result"]
            return [{"role": "user", "content": results}, {"role": "user", "content": _collapse(rest)}]
    return [{"role": role, "content": _collapse(blocks)}]


def _system_parts(system: Any) -> list[str]:
    if system is None:
        return []
    texts = [system] if isinstance(system, str) else _text_of_blocks(system)
    return [t for t in map(strip_billing_header, texts) if t]


def normalize_messages(system: Any, messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Fold system messages into one system string; normalize the turns.

    Returns (system text, messages).  LiteLLM 1.74's adapter drops role
    "system" messages inside ``messages``, so Claude Code's environment, agent
    list and skills would never reach the model.
    """
    parts = _system_parts(system)
    turns: list[dict[str, Any]] = []
    for msg in messages:
        content = msg["content"]
        if msg["role"] == "system":
            text = content if isinstance(content, str) else "\n".join(_text_of_blocks(content))
            if text:
                parts.append(text)
        else:
            turns.append({"role": msg["role"], "content": content})
    out: list[dict[str, Any]] = []
    for turn in _merge_same_role(turns):
        out.extend(_emit(turn["role"], turn["content"]))
    return "\n\n".join(parts), out


# --------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------

def normalize_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep name, description and input_schema; drop server tools.

    The 1.74 adapter copies every other tool key (cache_control,
    defer_loading, type, ...) *into* the function's JSON schema, and turns a
    server tool (web_search, bash_2025..., no input_schema) into a function
    whose "schema" is its settings.  The schema object itself is shared, not
    copied: it is never modified, and it is most of a request's bytes.
    """
    out = []
    for tool in tools:
        if "input_schema" not in tool:
            continue
        clean = {"name": tool["name"], "input_schema": tool["input_schema"]}
        if "description" in tool:
            clean["description"] = tool["description"]
        out.append(clean)
    return out


def normalize_tool_choice(choice: dict[str, Any], tool_names: set[str]) -> dict[str, Any] | None:
    """The tool_choice to keep, or None to drop it (then the model decides).

    Dropped when no tools remain (OpenAI rejects tool_choice without tools),
    when it names a tool that is not offered, and for "none" or unknown types,
    which the 1.74 adapter answers with a ValueError (HTTP 500).
    """
    if not tool_names:
        return None
    kind = choice.get("type")
    if kind in ("auto", "any"):
        return choice
    name = choice.get("name")
    if kind == "tool" and isinstance(name, str) and name in tool_names:
        return choice
    return None


# --------------------------------------------------------------------------
# The whole request
# --------------------------------------------------------------------------

def normalize_request(data: Any, policy: ParamPolicy, max_tokens_ceiling: int) -> Any:
    """The request LiteLLM 1.74 should see for ``data`` (an Anthropic body).

    Returns a new dict; ``data`` and everything in it are left untouched.
    A malformed body is returned as is (the same object).
    """
    if not is_well_formed(data):
        return data
    system, messages = normalize_messages(data.get("system"), data["messages"])
    if not messages:  # only system messages: nothing valid to send
        return data
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in STRUCTURAL_KEYS:
            continue
        if key in ANTHROPIC_FIELD_COUNTERPARTS:
            counterpart = ANTHROPIC_FIELD_COUNTERPARTS[key]
            if counterpart is None or counterpart not in policy.supported:
                continue
            if key == "stop_sequences":
                out.setdefault("stop", value)
                continue
        elif not policy.keeps(key):
            continue
        out[key] = value  # an explicit `stop` overrides one from stop_sequences
    if "model" in data:
        out["model"] = data["model"]
    out["messages"] = messages
    if system:
        out["system"] = system
    if "tools" in out:
        tools = normalize_tools(out["tools"] or [])
        if tools:
            out["tools"] = tools
        else:
            del out["tools"]
    if out.get("tool_choice") is not None:
        names = {t["name"] for t in out.get("tools", ())}
        choice = normalize_tool_choice(out["tool_choice"], names)
        if choice is None:
            del out["tool_choice"]
        else:
            out["tool_choice"] = choice
    max_tokens = out.get("max_tokens")
    if type(max_tokens) is int and max_tokens > max_tokens_ceiling:
        out["max_tokens"] = max_tokens_ceiling
    return out


# --------------------------------------------------------------------------
# Response side: patches of LiteLLM 1.74.0.post2 internals (items j and k)
# --------------------------------------------------------------------------

_PATCH_MARK = "_ccq_patched"


def _installed_litellm_version() -> str:
    from importlib.metadata import version

    return version("litellm")


def _fix_empty_content_beside_tool_calls(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap the adapter's per-chunk delta translation (item j).

    1.74 checks ``delta.content is not None`` before ``delta.tool_calls``, so
    a chunk carrying ``content: ""`` and a tool-call delta becomes an empty
    text_delta and the arguments are lost: Claude Code runs the tool with
    ``input: {}``.  An empty string beside tool calls carries no text, so it
    is treated as absent, which is LiteLLM's own later fix (1.75.8).
    """

    def translate(self: Any, choices: list[Any]) -> Any:
        for choice in choices:
            delta = getattr(choice, "delta", None)
            if delta is not None and getattr(delta, "content", None) == "" and getattr(delta, "tool_calls", None):
                delta.content = None
        return original(self, choices)

    setattr(translate, _PATCH_MARK, True)
    translate.__wrapped__ = original  # type: ignore[attr-defined]  # source fingerprints see the original
    return translate


def _own_chunk_queue(original_init: Callable[..., Any]) -> Callable[..., Any]:
    """Give every AnthropicStreamWrapper its own event queue (item j).

    1.74 declares ``chunk_queue = deque()`` on the class, so concurrent
    streams (Claude Code runs subagents in parallel) pop each other's
    content_block_start/stop and delta events.
    """
    from collections import deque

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.chunk_queue = deque()

    setattr(__init__, _PATCH_MARK, True)
    __init__.__wrapped__ = original_init  # type: ignore[attr-defined]  # source fingerprints see the original
    return __init__


def upstream_client_error(exc: BaseException) -> BaseException | None:
    """The upstream 4xx hidden inside the 1.74 adapter's ValueError, if any.

    The adapter catches every error of ``litellm.acompletion`` and raises
    ``ValueError("Error calling litellm.acompletion ...")`` inside its except
    block, so the original exception survives as ``__context__``.  The proxy
    takes the HTTP status from ``status_code`` and falls back to 500, which
    Claude Code retries for minutes.
    """
    if not isinstance(exc, ValueError):
        return None
    cause = exc.__context__
    status = getattr(cause, "status_code", None)
    if isinstance(status, int) and 400 <= status < 500:
        return cause
    return None


def _pass_through_client_errors(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap the adapter's async handler so an upstream 4xx keeps its status (item k)."""

    async def async_anthropic_messages_handler(*args: Any, **kwargs: Any) -> Any:
        try:
            return await original(*args, **kwargs)
        except ValueError as exc:
            cause = upstream_client_error(exc)
            if cause is None:
                raise
            raise cause from None

    setattr(async_anthropic_messages_handler, _PATCH_MARK, True)
    return async_anthropic_messages_handler


def litellm_patches_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """CCQ_LITELLM_PATCHES: "0" turns the response-side patches off."""
    return environ.get(LITELLM_PATCHES_ENV, "1").strip() != "0"


def stream_fastpath_mode(environ: Mapping[str, str] = os.environ) -> str:
    """CCQ_STREAM_FASTPATH: "off" for "0", "debug" for "debug", else "on"."""
    raw = environ.get(STREAM_FASTPATH_ENV, "1").strip().lower()
    if raw == "0":
        return "off"
    return "debug" if raw == "debug" else "on"


def load_stream_fastpath(directory: Path | None = None) -> ModuleType:
    """Import ccq_stream_fastpath.py from this file's own directory.

    LiteLLM loads this callback by file path (spec_from_file_location) and only
    appends its working directory to sys.path, so a plain ``import`` would
    depend on where the service was started.  The module is registered in
    sys.modules so that a second load of this callback reuses the installed one.
    """
    name = "ccq_stream_fastpath"
    if name in sys.modules:
        return sys.modules[name]
    path = (directory or Path(__file__).resolve().parent) / STREAM_FASTPATH_FILE
    if not path.is_file():
        raise RuntimeError(f"ccq: {path} is missing (deploy it beside custom_callbacks.py, "
                           f"or set {STREAM_FASTPATH_ENV}=0)")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def install_stream_fastpath(environ: Mapping[str, str] = os.environ) -> str | None:
    """Item l, after j and k: returns the fast path's description, or None when off.

    Raises RuntimeError (the proxy does not start) on a LiteLLM/openai source
    mismatch, like the other patches: a silent mismatch could corrupt streams.
    """
    mode = stream_fastpath_mode(environ)
    if mode == "off":
        return None
    description = load_stream_fastpath().install(debug=mode == "debug")
    LOG.info("ccq: %s", description)
    return str(description)


def apply_litellm_patches(installed_version: str | None = None) -> bool:
    """Patch LiteLLM 1.74.0.post2 for items j, k and l; idempotent.

    Refuses (RuntimeError) on any other version: these wrap private adapter
    functions whose behaviour was verified on 1.74.0.post2 only, and a silent
    mismatch would quietly bring back lost tool arguments or 500s.
    """
    found = installed_version or _installed_litellm_version()
    if found != PATCHED_LITELLM_VERSION:
        raise RuntimeError(
            f"ccq custom_callbacks.py patches LiteLLM {PATCHED_LITELLM_VERSION} internals, "
            f"but LiteLLM {found} is installed. Install litellm[proxy]=={PATCHED_LITELLM_VERSION}, "
            f"or set {LITELLM_PATCHES_ENV}=0 to run without the response-side fixes."
        )
    from litellm.llms.anthropic.experimental_pass_through.adapters import handler, streaming_iterator, transformation

    adapter = transformation.LiteLLMAnthropicMessagesAdapter
    wrapper = streaming_iterator.AnthropicStreamWrapper
    messages_handler = handler.LiteLLMMessagesToCompletionTransformationHandler
    if getattr(adapter._translate_streaming_openai_chunk_to_anthropic, _PATCH_MARK, False):
        install_stream_fastpath()  # idempotent; j and k are already in place
        return False
    adapter._translate_streaming_openai_chunk_to_anthropic = _fix_empty_content_beside_tool_calls(
        adapter._translate_streaming_openai_chunk_to_anthropic
    )
    wrapper.__init__ = _own_chunk_queue(wrapper.__init__)
    messages_handler.async_anthropic_messages_handler = staticmethod(
        _pass_through_client_errors(messages_handler.async_anthropic_messages_handler)
    )
    install_stream_fastpath()  # after j: the fast path reproduces the fixed stock path
    return True


# --------------------------------------------------------------------------
# The LiteLLM hook
# --------------------------------------------------------------------------

class CcqAnthropicNormalizer(_HookBase):  # type: ignore[misc,valid-type]
    """LiteLLM CustomLogger whose pre-call hook runs normalize_request."""

    def __init__(self, policy: ParamPolicy | None = None, max_tokens_ceiling: int | None = None) -> None:
        if _HookBase is not object:
            super().__init__()
        self._policy = policy
        self.max_tokens_ceiling = (
            max_tokens_ceiling if max_tokens_ceiling is not None else max_tokens_ceiling_from_env()
        )

    @property
    def policy(self) -> ParamPolicy:
        """The injected policy, else the one derived from the installed LiteLLM."""
        if self._policy is None:
            self._policy = derive_param_policy()
        return self._policy

    # LiteLLM calls this only if it is defined on the class itself
    # (ProxyLogging.pre_call_hook checks vars(type(callback))).
    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict, call_type: str) -> Any:
        """Normalize /v1/messages requests; everything else passes untouched."""
        if call_type not in ANTHROPIC_MESSAGES_CALL_TYPES:
            return data
        try:
            return normalize_request(data, self.policy, self.max_tokens_ceiling)
        except Exception as exc:  # never turn a request into a 500 of our own
            # Log the error type only: the body is the user's code.
            LOG.warning("ccq: request left as is; normalization failed with %s", type(exc).__name__)
            return data


# --------------------------------------------------------------------------
# Authentication (general_settings.custom_auth)
# --------------------------------------------------------------------------

MASTER_KEY_ENV = "LITELLM_MASTER_KEY"


def is_master_key(presented: Any, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``presented`` is the proxy's master key (constant-time compare).

    An unset or empty master key matches nothing: the proxy must never run open.
    """
    expected = environ.get(MASTER_KEY_ENV, "")
    if not expected or not isinstance(presented, str) or not presented:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


async def ccq_master_key_auth(request: Any, api_key: str) -> Any:
    """LiteLLM custom_auth: the master key is admitted, every other bearer is a 401.

    LiteLLM has already stripped "Bearer " (or read x-api-key).  The exception
    text never contains the presented key; LiteLLM maps it to HTTP 401.
    """
    if not is_master_key(api_key):
        raise PermissionError("Authentication Error: missing or wrong proxy key (ccq reads it from ~/.secrets)")
    from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth

    return UserAPIKeyAuth(api_key=api_key, user_role=LitellmUserRoles.PROXY_ADMIN)


if _HookBase is not object and litellm_patches_enabled():
    apply_litellm_patches()

proxy_handler_instance = CcqAnthropicNormalizer(
    policy=derive_param_policy() if _HookBase is not object else None
)
