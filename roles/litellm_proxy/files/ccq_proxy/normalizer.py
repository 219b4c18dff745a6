"""ccq's request normalizer: make Claude Code 2.x requests acceptable to Cerebras.

Part of the ccq_proxy package: its hook (hook.py) runs ``normalize_request`` on every
``/v1/messages`` request.  Plain Python: no LiteLLM
import at module level, so it is unit-tested without LiteLLM installed; the parameter
policy it needs is injected (``ParamPolicy``) and derived from LiteLLM by
``derive_param_policy`` (which imports LiteLLM when called).

Why it exists
-------------
Claude Code speaks Anthropic's ``/v1/messages``.  LiteLLM 1.74 translates that
to OpenAI chat completions for the ``cerebras/`` provider with its beta
Anthropic adapter (``litellm/llms/anthropic/experimental_pass_through``), which
mistranslates much of what Claude Code 2.x sends.  Before the adapter runs,
the hook rewrites the request (``normalize_request``) so that the adapter
produces what a strict OpenAI-compatible server accepts:

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
k. History the adapter garbles (issue 21): an assistant turn's text blocks are
   joined by a blank line (the adapter joined them with nothing); blocks only
   Anthropic understands (server_tool_use, web_search_tool_result, citations on
   text) keep their readable part (title, URL, quoted text) as text; a
   tool_result with is_error: true starts with "Error: ".
l. Tool calls are paired as Cerebras' API v2 requires (``pair_tool_calls``):
   each call answered at once (a synthetic error result for a call with none),
   no orphan results (they become text), no repeated ids (renamed
   deterministically); tool_choice "none" removes the tools.

A malformed body (no messages, messages not a list, content neither string
nor list, blocks without a type, ...) passes through unchanged so LiteLLM
answers it as it would without ccq; the hook never raises.

Environment knob
----------------
``CCQ_MAX_TOKENS_CEILING``  Positive integer ceiling for max_tokens
                            (default 16384).  Invalid values stop the proxy at
                            start-up with a message naming the variable.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------

MAX_TOKENS_CEILING_ENV = "CCQ_MAX_TOKENS_CEILING"
DEFAULT_MAX_TOKENS_CEILING = 16384

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


def derive_param_policy() -> ParamPolicy:
    """Build the ParamPolicy from the installed LiteLLM's own tables."""
    import inspect

    import litellm
    from litellm.constants import DEFAULT_CHAT_COMPLETION_PARAM_VALUES
    from litellm.types.utils import all_litellm_params

    # CerebrasConfig 1.74 answers the same list whatever the model: none needs naming.
    supported = frozenset(litellm.CerebrasConfig().get_supported_openai_params(model=""))
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
    return metadata is None or isinstance(metadata, dict)


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


# An OpenAI tool message has no error flag: the 1.74 adapter passes only the text of a
# tool_result with is_error: true, and the model reads a failure (a Bash exit 1 with no
# output, a refused edit) as a plain result.  A leading "Error: " says it in the text,
# in the words OpenAI-style models are trained on for failed function calls; a text that
# already starts so (ccq's own synthetic results) is left as is.
TOOL_ERROR_PREFIX = "Error: "

# What the model reads for a tool call of the history that has no tool_result (an
# aborted turn, a session cut short): Cerebras' API v2, like OpenAI, rejects an
# assistant tool call that is not followed at once by its tool message.
MISSING_TOOL_RESULT = ("Error: no result was recorded for this tool call "
                       "(the turn was interrupted before the tool ran).")

# Block types ccq knows how to pass (or drop); any other block of the history is one
# only Anthropic's API understands (server_tool_use, web_search_tool_result,
# web_fetch_tool_result, search_result, ...): the 1.74 adapter drops it silently, so
# its human-readable part is kept as text instead.
_KNOWN_BLOCK_TYPES = frozenset({"text", "tool_use", "tool_result", "image", "document",
                                "thinking", "redacted_thinking"})
# Fields that carry what a person would read of such a block (never encrypted_* or data).
_READABLE_FIELDS = ("title", "url", "cited_text", "text", "source", "page_age", "error_code")


def tool_error_text(text: str) -> str:
    """The text of a tool_result with is_error: true, marked as a failure (item C)."""
    return text if text.startswith("Error") else TOOL_ERROR_PREFIX + text


def _readable_parts(value: Any, out: list[str], depth: int = 0) -> None:
    """The human-readable strings of an Anthropic-only block, in order, without
    encrypted or binary content."""
    if depth > 6:
        return
    if isinstance(value, dict):
        for key in _READABLE_FIELDS:
            item = value.get(key)
            if isinstance(item, str) and item.strip():
                out.append(f'"{item.strip()}"' if key == "cited_text" else item.strip())
        for key, item in value.items():
            if isinstance(item, (dict, list)) and not key.startswith("encrypted"):
                _readable_parts(item, out, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _readable_parts(item, out, depth + 1)


def server_block_text(block: dict[str, Any]) -> str:
    """One Anthropic-only history block as text (empty when nothing is readable)."""
    kind = block["type"]
    if kind == "server_tool_use":
        query = json.dumps(block.get("input", {}), ensure_ascii=False, sort_keys=True)
        return f"[{block.get('name', 'server tool')} called with {query}]"
    parts: list[str] = []
    _readable_parts(block.get("content", block), parts)
    if not parts:
        return ""
    if kind.endswith("_tool_result"):
        return f"[{kind.removesuffix('_tool_result').replace('_', ' ')} result]\n" + "\n".join(parts)
    return "\n".join(parts)


def _text_with_citations(block: dict[str, Any]) -> str:
    """A text block's text, followed by its citations' title, URL and quoted text
    (the 1.74 adapter, and OpenAI's text parts, have no place for citations)."""
    lines = []
    for cite in block.get("citations") or ():
        parts: list[str] = []
        _readable_parts(cite, parts)
        if parts:
            lines.append("- " + " ".join(parts))
    text: str = block["text"]
    return text + ("\n\nSources:\n" + "\n".join(lines) if lines else "")


def _clean_block(block: dict[str, Any], takes_images: bool) -> dict[str, Any] | None:
    """A block without cache_control (Anthropic-only), with a flat tool_result, and
    a note in place of what the model cannot read (None: drop it)."""
    kind = block["type"]
    if kind == "text":
        if block.get("citations"):
            return {"type": "text", "text": _text_with_citations(block)}
        return block if len(block) == 2 else {"type": "text", "text": block["text"]}
    if kind == "tool_use":
        return {"type": "tool_use", "id": block["id"], "name": block["name"],
                "input": block.get("input", {})}
    if kind == "tool_result":
        text = tool_result_text(block.get("content"), takes_images)
        out = {"type": "tool_result", "tool_use_id": block["tool_use_id"],
               "content": tool_error_text(text) if block.get("is_error") is True else text}
        if "is_error" in block:
            out["is_error"] = block["is_error"]
        return out
    if kind == "image" and takes_images and is_image_block(block):
        return {"type": "image", "source": block["source"]}
    if kind == "image" or kind == "document":
        return {"type": "text", "text": omitted_note(block)}
    if kind not in _KNOWN_BLOCK_TYPES:
        text = server_block_text(block)
        return {"type": "text", "text": text} if text else None
    if "cache_control" in block:
        return {k: v for k, v in block.items() if k != "cache_control"}
    return block


def _tool_result_images(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The images inside tool results, as user image blocks (a tool message is text only)."""
    return [{"type": "image", "source": b["source"]}
            for block in blocks if block.get("type") == "tool_result" and isinstance(block.get("content"), list)
            for b in block["content"] if is_image_block(b)]


def _collapse(blocks: list[dict[str, Any]], joiner: str = "\n") -> str | list[dict[str, Any]]:
    """Text-only content lists become one string; others stay lists."""
    for block in blocks:
        if block["type"] != "text":
            return blocks
    return joiner.join(block["text"] for block in blocks)


# Between two text blocks of one assistant turn: the 1.74 adapter concatenates an
# assistant turn's text blocks with nothing between them ("...search the web.Python 3.14
# adds..."), where Anthropic's model saw separate blocks.
ASSISTANT_TEXT_JOINER = "\n\n"


def _assistant_blocks(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An assistant turn's text blocks as ONE text block (joined by a blank line), first,
    then its tool calls: the adapter puts all text in ``content`` and the calls in
    ``tool_calls`` whatever their order, so only the joining changes."""
    texts = [b["text"] for b in blocks if b["type"] == "text" and b["text"]]
    rest = [b for b in blocks if b["type"] != "text"]
    return ([{"type": "text", "text": ASSISTANT_TEXT_JOINER.join(texts)}] if texts else []) + rest


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


def _unique_id(call_id: str, seen: set[str]) -> str:
    """A tool call id not used before in the request, derived from ``call_id``.

    Deterministic (the same history gives the same ids on every request), so Cerebras'
    prompt prefix cache still matches a conversation's earlier turns.
    """
    base = call_id or "toolu_ccq"
    n = 2
    while f"{base}_{n}" in seen:
        n += 1
    return f"{base}_{n}"


def _orphan_result_text(block: dict[str, Any]) -> dict[str, Any]:
    """A tool_result that answers no pending call, as user text (its content is kept)."""
    text = tool_result_text(block.get("content"))
    if block.get("is_error") is True:
        text = tool_error_text(text)
    return {"type": "text", "text": f"[result of an earlier tool call {block['tool_use_id']}]\n{text}"}


def pair_tool_calls(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Make every tool call of the history answered at once, exactly once, by a unique id.

    Cerebras' API v2 (default since 2026-07-21), like OpenAI, rejects with 400: an
    assistant tool call not followed at once by its tool message; a tool message whose
    id no preceding assistant message called (an orphan); and a tool_call id used twice.
    Claude Code's histories break each rule at times: an aborted turn leaves a tool_use
    with no tool_result, a resumed or compacted session leaves a tool_result whose call
    is gone (or a user message between them), and resumed sessions can repeat ids.

    ``turns``: same-role turns merged (so user and assistant alternate).  Per assistant
    turn, a repeated (or empty) tool_use id gets a deterministic new id, and so does its
    result in the next turn; that next user turn then starts with one tool_result per
    call, in call order: its own, or MISSING_TOOL_RESULT.  A tool_result that answers no
    call of the turn just before (or answers one twice) becomes user text.  A final
    assistant turn (a prefill) loses its tool calls: nothing can answer them.
    """
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    pending: list[tuple[str, str]] = []  # (id in Claude Code's history, id sent upstream)
    for position, turn in enumerate(turns):
        content = turn["content"]
        if turn["role"] == "assistant":
            pending = []
            if isinstance(content, str):
                out.append(turn)
                continue
            blocks = []
            last = position == len(turns) - 1
            for block in content:
                if block["type"] == "tool_use":
                    if last:
                        continue
                    asked = sent = block["id"]
                    if not sent or sent in seen:
                        sent = _unique_id(asked, seen)
                        block = dict(block, id=sent)
                    seen.add(sent)
                    pending.append((asked, sent))
                blocks.append(block)
            out.append({"role": "assistant", "content": blocks})
            continue
        if isinstance(content, str) and not pending:
            out.append(turn)
            continue
        answers: dict[str, dict[str, Any]] = {}
        rest: list[dict[str, Any]] = []
        for block in _as_blocks(content):
            if block["type"] != "tool_result":
                rest.append(block)
                continue
            match = next((sent for asked, sent in pending
                          if asked == block["tool_use_id"] and sent not in answers), None)
            if match is None:
                rest.append(_orphan_result_text(block))
            else:
                answers[match] = dict(block, tool_use_id=match)
        results = [answers.get(sent) or {"type": "tool_result", "tool_use_id": sent,
                                         "content": MISSING_TOOL_RESULT, "is_error": True}
                   for _, sent in pending]
        out.append({"role": "user", "content": results + rest})
        pending = []
    return out


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
    blocks = [c for c in (_clean_block(b, takes_images) for b in kept) if c is not None]
    if role == "assistant":
        return [{"role": role, "content": _collapse(_assistant_blocks(blocks))}]
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
    for turn in pair_tool_calls(_merge_same_role(turns)):
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

    Dropped when no tools remain (OpenAI, and Cerebras' API v2, reject tool_choice
    without tools: Claude Code's auto-mode classifier sends requests with no tools),
    when it names a tool that is not offered, and for unknown types, which the 1.74
    adapter answers with a ValueError (HTTP 500).  "none" is handled by
    normalize_request: it removes the tools.
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
    image becomes a short note, item j).

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
    if (out.get("tool_choice") or {}).get("type") == "none":
        # Anthropic's tool_choice "none": the model must not call a tool.  The 1.74 adapter
        # cannot send OpenAI's "none" (translate_anthropic_tool_choice_to_openai raises
        # ValueError on it, so the normalizer used to drop it and the tools stayed on offer):
        # without tools the model cannot call one.  The tool calls of the history stay, as
        # OpenAI-compatible servers take them without tools.  Cost: this request's prompt
        # differs from the conversation's (no tool definitions), so it misses the prefix cache.
        out.pop("tools", None)
        del out["tool_choice"]
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

