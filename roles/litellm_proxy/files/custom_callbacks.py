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
h. ``max_tokens`` is clamped to the model's output limit (``model_info.max_output_tokens``
   of the alias, from ccq's model table) and to CCQ_MAX_TOKENS_CEILING: Cerebras
   reserves max_tokens against the per-minute quota before running a request, and
   Claude Code asks 32000.
i. Only ``/v1/messages`` is touched: call_type ``"text_completion"`` in 1.74,
   ``"anthropic_messages"`` in later LiteLLM versions.
j. Images: kept for a model that takes them (``model_info.supports_vision`` of
   the alias in the proxy config), a tool result's images moved after the tool
   results (a tool message is text only); for a text-only model each image, and
   any PDF document, becomes a one-line note, so the request still succeeds.

A malformed body (no messages, messages not a list, content neither string
nor list, blocks without a type, ...) passes through unchanged so LiteLLM
answers it as it would without ccq; the hook never raises.

On the response side, patches of LiteLLM 1.74.0.post2 internals
(``apply_litellm_patches``), keyed to that exact version and to the source hash
of every function they replace.  What Claude Code receives is written by
``ccq_anthropic_wire.py`` (deployed beside this file), on both relay paths:

k. An upstream error reached Claude Code as HTTP 500 (the adapter re-raises
   every error as a bare ValueError); the upstream's own error and status pass.
l. Speed: 1.74 spends ~0.2-0.6 ms of CPU per streamed chunk on /v1/messages,
   so it relays ~1,500 chunks/s, slower than Cerebras.  ``ccq_stream_fastpath.py``
   reads OpenAI-compatible upstream streams at the byte level and feeds m's
   translator, handing any unmodelled stream back to LiteLLM's own path.
m. Streams: LiteLLM's AnthropicStreamWrapper is replaced by
   ccq_anthropic_wire.AnthropicStream: one tool_use block per parallel tool call
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
   gets two event hooks from ``ccq_quota.py``: every upstream answer's
   ``x-ratelimit-*`` figures are kept per model, and a request that the last
   figures say will not fit waits for the window to turn (bounded, logged)
   instead of being sent to be refused.

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
``CCQ_QUOTA_MAX_WAIT``      Longest wait for Cerebras' per-minute token quota,
                            in seconds (default 60; 0 turns pacing off).
``CCQ_QUOTA_STATE``         File the last quota figures are written to, for
                            ``ccq status`` (unset: none).
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
import json
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
QUOTA_FILE = "ccq_quota.py"
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


def omitted_note(block: dict[str, Any]) -> str:
    """The text that stands in for a block the model cannot read (an image for a
    text-only model, a PDF document), so the request still succeeds and the model
    knows something was left out."""
    kind = block.get("type")
    source = block.get("source")
    media = source.get("media_type") if isinstance(source, dict) else None
    what = f"{kind} ({media})" if isinstance(media, str) else str(kind)
    return f"[{what} omitted: the model behind ccq takes text only]"


def is_image_block(block: Any) -> bool:
    """An Anthropic image block whose source a data URL can carry (base64 or url)."""
    source = block.get("source") if isinstance(block, dict) and block.get("type") == "image" else None
    if not isinstance(source, dict):
        return False
    if source.get("type") == "base64":
        return isinstance(source.get("media_type"), str) and isinstance(source.get("data"), str)
    return source.get("type") == "url" and isinstance(source.get("url"), str)


def tool_result_text(content: Any, takes_images: bool = False) -> str:
    """One string for a tool_result's content.

    LiteLLM 1.74 turns each block of a list into its own ``tool`` message with
    the same tool_call_id (OpenAI rejects duplicates), and a tool message holds
    text only.  Other blocks are named in a short note: for a model that takes
    images, the images themselves follow the tool results (see _emit).
    """
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        parts = []
        for block in content:
            if block.get("type") == "text":
                parts.append(block.get("text", ""))
            elif takes_images and is_image_block(block):
                parts.append("[image: attached after the tool results]")
            else:
                parts.append(omitted_note(block))
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


def _clean_block(block: dict[str, Any], takes_images: bool) -> dict[str, Any]:
    """A block without cache_control (Anthropic-only), with a flat tool_result, and
    a note in place of what the model cannot read."""
    kind = block["type"]
    if kind == "text":
        return block if len(block) == 2 else {"type": "text", "text": block["text"]}
    if kind == "tool_use":
        return {"type": "tool_use", "id": block["id"], "name": block["name"],
                "input": block.get("input", {})}
    if kind == "tool_result":
        out = {"type": "tool_result", "tool_use_id": block["tool_use_id"],
               "content": tool_result_text(block.get("content"), takes_images)}
        if "is_error" in block:
            out["is_error"] = block["is_error"]
        return out
    if kind == "image" and takes_images and is_image_block(block):
        return {"type": "image", "source": block["source"]}
    if kind == "image" or kind == "document":
        return {"type": "text", "text": omitted_note(block)}
    if "cache_control" in block:
        return {k: v for k, v in block.items() if k != "cache_control"}
    return block


def _tool_result_images(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The images inside tool results, as user image blocks (a tool message is text only)."""
    return [{"type": "image", "source": b["source"]}
            for block in blocks if block.get("type") == "tool_result" and isinstance(block.get("content"), list)
            for b in block["content"] if is_image_block(b)]


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


def _emit(role: str, content: str | list[dict[str, Any]], takes_images: bool) -> list[dict[str, Any]]:
    """The message(s) for one turn: tool results first, in their own message.

    LiteLLM 1.74 emits a user turn's text *before* its tool messages; OpenAI
    requires tool messages directly after the assistant's tool_calls.  So a
    user turn holding tool_result blocks and anything else becomes two user
    messages: the tool results, then the rest (with a tool result's images, for
    a model that takes images).
    """
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    kept = [b for b in content if b["type"] not in _DROPPED_BLOCK_TYPES]
    blocks = [_clean_block(b, takes_images) for b in kept]
    if role == "user":
        results = [b for b in blocks if b["type"] == "tool_result"]
        rest = [b for b in blocks if b["type"] != "tool_result"]
        if takes_images:
            rest += _tool_result_images(kept)
        if results and rest:
            return [{"role": "user", "content": results}, {"role": "user", "content": _collapse(rest)}]
    return [{"role": role, "content": _collapse(blocks)}]


def _system_parts(system: Any) -> list[str]:
    if system is None:
        return []
    texts = [system] if isinstance(system, str) else _text_of_blocks(system)
    return [t for t in map(strip_billing_header, texts) if t]


def normalize_messages(system: Any, messages: list[dict[str, Any]],
                       takes_images: bool = False) -> tuple[str, list[dict[str, Any]]]:
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
        out.extend(_emit(turn["role"], turn["content"], takes_images))
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

def normalize_request(data: Any, policy: ParamPolicy, max_tokens_ceiling: int,
                      takes_images: bool = False) -> Any:
    """The request LiteLLM 1.74 should see for ``data`` (an Anthropic body).

    ``takes_images``: whether the model behind the alias reads images (else each
    image becomes a short note, item n).

    Returns a new dict; ``data`` and everything in it are left untouched.
    A malformed body is returned as is (the same object).
    """
    if not is_well_formed(data):
        return data
    system, messages = normalize_messages(data.get("system"), data["messages"], takes_images)
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
# Response side: patches of LiteLLM 1.74.0.post2 internals (items k to p)
# --------------------------------------------------------------------------

_PATCH_MARK = "_ccq_patched"
WIRE_FILE = "ccq_anthropic_wire.py"

# sha256 (first 16 hex) of inspect.getsource() of each LiteLLM function a patch below
# replaces or wraps, recorded from litellm 1.74.0.post2: a different source refuses to start.
PATCHED_SOURCES: Mapping[str, str] = {
    "AnthropicAdapter.translate_completion_output_params_streaming": "1e981576b2163246",
    "Adapter._translate_openai_content_to_anthropic": "add7e1d9ee52e533",
    "Adapter.translate_anthropic_messages_to_openai": "f133be4213925aed",
    "Handler.async_anthropic_messages_handler": "ad4fe2ddb8717c57",
    "anthropic_endpoints.anthropic_response": "3f09785cf59ddd38",
    "OpenAIChatCompletion.completion": "403b77f0949debdd",
    "BaseOpenAILLM._get_async_http_client": "9882b9f81294d004",
}


def _installed_litellm_version() -> str:
    from importlib.metadata import version

    return version("litellm")


def load_sibling(file_name: str, directory: Path | None = None) -> ModuleType:
    """Import one of ccq's files that sit beside this one (ccq_anthropic_wire.py,
    ccq_stream_fastpath.py).

    LiteLLM loads this callback by file path (spec_from_file_location) and only
    appends its working directory to sys.path, so a plain ``import`` would
    depend on where the service was started.  The module is registered in
    sys.modules so that a second load of this callback reuses the first.
    """
    name = file_name.removesuffix(".py")
    if name in sys.modules:
        return sys.modules[name]
    path = (directory or Path(__file__).resolve().parent) / file_name
    if not path.is_file():
        raise RuntimeError(f"ccq: {path} is missing (deploy it beside custom_callbacks.py)")
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


def _mark(patch: Callable[..., Any], original: Callable[..., Any]) -> Callable[..., Any]:
    setattr(patch, _PATCH_MARK, True)
    patch.__wrapped__ = original  # type: ignore[attr-defined]  # source fingerprints see the original
    return patch


def _chunk_as_dict(chunk: Any) -> dict[str, Any]:
    """A ModelResponseStream as the OpenAI chunk dict ccq_anthropic_wire reads."""
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
            "usage": {"prompt_tokens": getattr(usage, "prompt_tokens", 0),
                      "completion_tokens": getattr(usage, "completion_tokens", 0)} if usage else None}


def _stream_error(wire: ModuleType, exc: BaseException) -> tuple[str, str]:
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


def _translate_stream_with_ccq(wire: ModuleType, original: Callable[..., Any]) -> Callable[..., Any]:
    """Item m: LiteLLM's own stream path translates with ccq_anthropic_wire.AnthropicStream.

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
            except Exception as exc:  # an upstream error or a broken connection mid-answer
                LOG.warning("ccq: upstream stream failed with %s", type(exc).__name__)
                yield b"".join(stream.fail(*_stream_error(wire, exc)))
                return
            # A wrapper without received_finish_reason: the chunks' own finish_reason decides.
            finished = (completion_stream.received_finish_reason is not None
                        if hasattr(completion_stream, "received_finish_reason") else None)
            yield b"".join(stream.finish(upstream_finished=finished))

        return relay()

    return _mark(translate_completion_output_params_streaming, original)


def _content_with_text_and_tools(wire: ModuleType, original: Callable[..., Any]) -> Callable[..., Any]:
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

    return _mark(_translate_openai_content_to_anthropic, original)


def _image_data_urls(original: Callable[..., Any]) -> Callable[..., Any]:
    """Item o: an image reaches the model as ``data:<media_type>;base64,<data>``.

    1.74 writes ``data:image;base64,{'type': 'base64', ...}`` (the source dict as text).
    The normalizer (item n of the request side) leaves image blocks only for a model
    that takes images, and only at the top level of user turns, so the k-th image_url
    the adapter writes is the k-th image block of the request.
    """

    def translate_anthropic_messages_to_openai(self: Any, messages: list[Any]) -> list[Any]:
        out = original(self, messages)
        sources = [b["source"] for m in messages if m.get("role") == "user" and isinstance(m.get("content"), list)
                   for b in m["content"] if is_image_block(b)]
        urls = iter(s["url"] if s["type"] == "url" else f"data:{s['media_type']};base64,{s['data']}"
                    for s in sources)
        for message in out:
            content = message.get("content") if message.get("role") == "user" else None
            for part in content if isinstance(content, list) else ():
                if isinstance(part, dict) and part.get("type") == "image_url":
                    part["image_url"] = {"url": next(urls, part["image_url"].get("url"))}
        return out

    return _mark(translate_anthropic_messages_to_openai, original)


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

    return _mark(async_anthropic_messages_handler, original)


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

    return _mark(completion, original)


def _paced_http_client(quota: ModuleType, original: Callable[[], Any]) -> Callable[[], Any]:
    """Item r: the httpx client LiteLLM gives the openai SDK, with ccq's quota hooks.

    Every Cerebras request of both relay paths goes through this client, and httpx
    calls its event hooks before a request is sent (so a wait delays the request,
    never a byte of an answer) and when an answer's headers arrive.
    """
    import asyncio
    import weakref

    book = quota.quota_book_from_env()
    sent_to: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()

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

    return _mark(client, original)


def _response_headers(exc: BaseException | None) -> Mapping[str, Any]:
    """The upstream response's headers that LiteLLM kept on its exception."""
    for candidate in (getattr(exc, "litellm_response_headers", None),
                      getattr(getattr(exc, "response", None), "headers", None)):
        if candidate:
            return candidate
    return {}


def _anthropic_error_responses(wire: ModuleType, original: Callable[..., Any]) -> Callable[..., Any]:
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

    return _mark(anthropic_response, original)


def _messages_routes() -> list[Any]:
    """The proxy's /v1/messages routes (FastAPI calls ``route.dependant.call``)."""
    from litellm.proxy.proxy_server import app

    return [r for r in app.routes if getattr(r, "path", "").endswith("/v1/messages")
            and getattr(getattr(r, "dependant", None), "call", None) is not None]


def litellm_patches_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """CCQ_LITELLM_PATCHES: "0" turns the response-side patches off."""
    return environ.get(LITELLM_PATCHES_ENV, "1").strip() != "0"


def stream_fastpath_mode(environ: Mapping[str, str] = os.environ) -> str:
    """CCQ_STREAM_FASTPATH: "off" for "0", "debug" for "debug", else "on"."""
    raw = environ.get(STREAM_FASTPATH_ENV, "1").strip().lower()
    if raw == "0":
        return "off"
    return "debug" if raw == "debug" else "on"


def install_stream_fastpath(wire: ModuleType, environ: Mapping[str, str] = os.environ) -> str | None:
    """Item l, after m: returns the fast path's description, or None when off.

    Raises RuntimeError (the proxy does not start) on a LiteLLM/openai source
    mismatch, like the other patches: a silent mismatch could corrupt streams.
    """
    mode = stream_fastpath_mode(environ)
    if mode == "off":
        return None
    description = load_sibling(STREAM_FASTPATH_FILE).install(wire, debug=mode == "debug")
    LOG.info("ccq: %s", description)
    return str(description)


def _source_hash(fn: Callable[..., Any]) -> str:
    import hashlib
    import inspect

    return hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()[:16]


def _patch_targets() -> dict[str, tuple[Any, str]]:
    """Each patched LiteLLM function: (owner, attribute)."""
    from litellm.llms.anthropic.experimental_pass_through.adapters import handler, transformation
    from litellm.llms.openai.common_utils import BaseOpenAILLM
    from litellm.llms.openai.openai import OpenAIChatCompletion

    return {
        "OpenAIChatCompletion.completion": (OpenAIChatCompletion, "completion"),
        "BaseOpenAILLM._get_async_http_client": (BaseOpenAILLM, "_get_async_http_client"),
        "AnthropicAdapter.translate_completion_output_params_streaming":
            (transformation.AnthropicAdapter, "translate_completion_output_params_streaming"),
        "Adapter._translate_openai_content_to_anthropic":
            (transformation.LiteLLMAnthropicMessagesAdapter, "_translate_openai_content_to_anthropic"),
        "Adapter.translate_anthropic_messages_to_openai":
            (transformation.LiteLLMAnthropicMessagesAdapter, "translate_anthropic_messages_to_openai"),
        "Handler.async_anthropic_messages_handler":
            (handler.LiteLLMMessagesToCompletionTransformationHandler, "async_anthropic_messages_handler"),
    }


def patched_source_hashes() -> dict[str, str]:
    """Source hashes of the LiteLLM functions the patches replace (to (re)record PATCHED_SOURCES)."""
    hashes = {name: _source_hash(getattr(owner, attr)) for name, (owner, attr) in _patch_targets().items()}
    for route in _messages_routes()[:1]:
        hashes["anthropic_endpoints.anthropic_response"] = _source_hash(route.dependant.call)
    return hashes


def apply_litellm_patches(installed_version: str | None = None) -> bool:
    """Patch LiteLLM 1.74.0.post2 for items k to p; idempotent.

    Refuses (RuntimeError) on any other version or source: these replace private
    adapter functions whose behaviour was verified on 1.74.0.post2 only, and a
    silent mismatch would quietly bring back merged tool calls or truncated answers
    taken as final.
    """
    found = installed_version or _installed_litellm_version()
    if found != PATCHED_LITELLM_VERSION:
        raise RuntimeError(
            f"ccq custom_callbacks.py patches LiteLLM {PATCHED_LITELLM_VERSION} internals, "
            f"but LiteLLM {found} is installed. Install litellm[proxy]=={PATCHED_LITELLM_VERSION}, "
            f"or set {LITELLM_PATCHES_ENV}=0 to run without the response-side fixes."
        )
    wire = load_sibling(WIRE_FILE)
    targets = _patch_targets()
    owner, attr = targets["AnthropicAdapter.translate_completion_output_params_streaming"]
    if getattr(getattr(owner, attr), _PATCH_MARK, False):
        return False  # a second load of this file: everything is in place
    now = patched_source_hashes()
    changed = sorted(k for k, h in PATCHED_SOURCES.items() if now.get(k) != h)
    if changed:
        raise RuntimeError(f"ccq custom_callbacks.py: LiteLLM's source differs from {PATCHED_LITELLM_VERSION} "
                           f"in {changed}; set {LITELLM_PATCHES_ENV}=0 to run without ccq's fixes")
    patches = {
        "AnthropicAdapter.translate_completion_output_params_streaming":
            lambda f: _translate_stream_with_ccq(wire, f),
        "Adapter._translate_openai_content_to_anthropic": lambda f: _content_with_text_and_tools(wire, f),
        "Adapter.translate_anthropic_messages_to_openai": _image_data_urls,
        "Handler.async_anthropic_messages_handler": lambda f: staticmethod(_pass_through_upstream_errors(f)),
        "OpenAIChatCompletion.completion": _honour_max_retries,
        "BaseOpenAILLM._get_async_http_client":
            lambda f: staticmethod(_paced_http_client(load_sibling(QUOTA_FILE), f)),
    }
    for name, patch in patches.items():
        owner, attr = targets[name]
        setattr(owner, attr, patch(getattr(owner, attr)))
    for route in _messages_routes():
        route.dependant.call = _anthropic_error_responses(wire, route.dependant.call)
    install_stream_fastpath(wire)  # after m: the fast path hands unmodelled streams to it
    return True


# --------------------------------------------------------------------------
# The LiteLLM hook
# --------------------------------------------------------------------------

def _router_model_infos(alias: Any) -> list[Mapping[str, Any]]:
    """The ``model_info`` of each deployment of the proxy's model ``alias`` (the role
    writes them from ccq's model table, the one place that says what each Cerebras
    model can do)."""
    try:
        from litellm.proxy.proxy_server import llm_router
    except ImportError:  # plain-Python unit tests
        return []
    if llm_router is None or not isinstance(alias, str):
        return []
    return [d.get("model_info") or {} for d in llm_router.get_model_list(model_name=alias) or ()]


def router_takes_images(alias: Any) -> bool:
    """Whether ``alias`` takes images: its ``model_info.supports_vision``. Unknown: text only."""
    return any(info.get("supports_vision") is True for info in _router_model_infos(alias))


def router_max_output(alias: Any) -> int | None:
    """The most output tokens ``alias`` may ask for: its ``model_info.max_output_tokens``."""
    limits = [v for v in (info.get("max_output_tokens") for info in _router_model_infos(alias))
              if type(v) is int and v > 0]
    return min(limits) if limits else None


class CcqAnthropicNormalizer(_HookBase):  # type: ignore[misc,valid-type]
    """LiteLLM CustomLogger whose pre-call hook runs normalize_request."""

    def __init__(self, policy: ParamPolicy | None = None, max_tokens_ceiling: int | None = None,
                 takes_images: Callable[[Any], bool] = router_takes_images,
                 max_output: Callable[[Any], int | None] = router_max_output) -> None:
        if _HookBase is not object:
            super().__init__()
        self._policy = policy
        self.takes_images = takes_images
        self.max_output = max_output
        self.max_tokens_ceiling = (
            max_tokens_ceiling if max_tokens_ceiling is not None else max_tokens_ceiling_from_env()
        )

    @property
    def policy(self) -> ParamPolicy:
        """The injected policy, else the one derived from the installed LiteLLM."""
        if self._policy is None:
            self._policy = derive_param_policy()
        return self._policy

    def normalize(self, data: Any) -> Any:
        """normalize_request with the limits of the model ``data`` asks for."""
        alias = data.get("model") if isinstance(data, dict) else None
        model_limit = self.max_output(alias)
        ceiling = min(self.max_tokens_ceiling, model_limit) if model_limit else self.max_tokens_ceiling
        return normalize_request(data, self.policy, ceiling, self.takes_images(alias))

    # LiteLLM calls this only if it is defined on the class itself
    # (ProxyLogging.pre_call_hook checks vars(type(callback))).
    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict, call_type: str) -> Any:
        """Normalize /v1/messages requests; everything else passes untouched."""
        if call_type not in ANTHROPIC_MESSAGES_CALL_TYPES:
            return data
        try:
            return self.normalize(data)
        except Exception as exc:  # never turn a request into a 500 of our own
            # Log the error type only: the body is the user's code.
            LOG.warning("ccq: request left as is; normalization failed with %s", type(exc).__name__)
            return data


# --------------------------------------------------------------------------
# POST /v1/messages/count_tokens (LiteLLM 1.74 has no such route)
# --------------------------------------------------------------------------

COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
# The tokenizer counted with: o200k_base, which LiteLLM ships in its own tiktoken cache (so
# it works offline). It is gpt-oss' vocabulary (o200k_harmony adds only chat-format tokens);
# for the Qwen and GLM models it is the nearest one a registry package carries. LiteLLM
# picks o200k_base for this model name.
COUNT_TOKENS_TOKENIZER_MODEL = "gpt-4o"


def count_input_tokens(body: Any, hook: "CcqAnthropicNormalizer") -> int:
    """Tokens of the request /v1/messages would send upstream for ``body``.

    The body goes through ccq's normalization and LiteLLM's own Anthropic→OpenAI
    translation, as a /v1/messages request does; then LiteLLM counts the OpenAI
    messages (its per-message overheads included) and the tools' JSON.
    """
    import litellm
    from litellm.llms.anthropic.experimental_pass_through.adapters.transformation import (
        LiteLLMAnthropicMessagesAdapter,
    )

    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        raise ValueError("messages: a list of Anthropic messages is required")
    data = dict(body, max_tokens=body.get("max_tokens") or 1)
    normalized = hook.normalize(data)
    openai_request = LiteLLMAnthropicMessagesAdapter().translate_anthropic_to_openai(normalized)
    count = litellm.token_counter(model=COUNT_TOKENS_TOKENIZER_MODEL, messages=openai_request["messages"])
    tools = openai_request.get("tools")
    if tools:
        # The whole schemas, as the model's chat template writes them: LiteLLM's own tool
        # estimate follows OpenAI's private format and skips nested property descriptions,
        # which are most of Claude Code's 15 KB of tool definitions.
        count += litellm.token_counter(model=COUNT_TOKENS_TOKENIZER_MODEL,
                                       text=json.dumps(tools, ensure_ascii=False, separators=(",", ":")))
    return count


def add_count_tokens_route(hook: "CcqAnthropicNormalizer") -> bool:
    """Serve COUNT_TOKENS_PATH on the proxy's app, behind the proxy's own key check.

    Anthropic's gateway contract for Claude Code lists it beside /v1/messages; 1.74
    answers it with 404.  Idempotent (a second load of this file adds nothing).
    """
    from fastapi import Depends, Request
    from fastapi.responses import JSONResponse
    from litellm.proxy.auth.user_api_key_auth import user_api_key_auth
    from litellm.proxy.proxy_server import app

    if any(getattr(r, "path", None) == COUNT_TOKENS_PATH for r in app.routes):
        return False

    async def count_tokens(request: Request) -> Any:
        try:
            body = await request.json()
            return {"input_tokens": count_input_tokens(body, hook)}
        except Exception as exc:  # a malformed body is the client's error, said in Anthropic's shape
            return JSONResponse(status_code=400, content={"type": "error", "error": {
                "type": "invalid_request_error", "message": f"count_tokens: {exc}"}})

    # This file postpones annotations; FastAPI must see the Request class itself, not the
    # string "Request" it cannot resolve here (it would take it for a query parameter).
    count_tokens.__annotations__["request"] = Request
    app.add_api_route(COUNT_TOKENS_PATH, count_tokens, methods=["POST"],
                      dependencies=[Depends(user_api_key_auth)])
    return True


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

if _HookBase is not object and "litellm.proxy.proxy_server" in sys.modules:
    add_count_tokens_route(proxy_handler_instance)
