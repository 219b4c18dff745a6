"""Property tests (hypothesis) over generated Anthropic-shaped requests.

The generator builds conversations the way Claude Code does (text, system
messages in between, tool_use answered by tool_result in the next user turn,
mixed with text, cache_control sprinkled about, server tools, thinking ...)
and, for the never-raises property, also corrupts them with arbitrary JSON.
"""

from __future__ import annotations

import copy
import json
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.callback_support import BILLING_LINE, EPHEMERAL, normalize, text_only_lists, tool_pairs, walk_blocks

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

words = st.text(alphabet="abc xyz\n<>", min_size=0, max_size=12)
maybe_cache = st.sampled_from([{}, {"cache_control": EPHEMERAL}])


@st.composite
def text_block(draw):
    return {"type": "text", "text": draw(words), **draw(maybe_cache)}


@st.composite
def image_block(draw):
    return {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="},
            **draw(maybe_cache)}


@st.composite
def user_content(draw):
    if draw(st.booleans()):
        return draw(words)
    return draw(st.lists(st.one_of(text_block(), image_block()), min_size=1, max_size=3))


@st.composite
def tool_result_content(draw):
    kind = draw(st.sampled_from(["missing", "string", "texts", "mixed"]))
    if kind == "missing":
        return None
    if kind == "string":
        return draw(words)
    blocks = draw(st.lists(text_block(), min_size=0, max_size=3))
    if kind == "mixed":
        blocks.append(draw(image_block()))
    return blocks


@st.composite
def conversation(draw):
    """Messages obeying Anthropic's rules: every tool_use answered next turn."""
    messages = []
    counter = draw(st.integers(0, 1000))
    pending: list[str] = []
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.booleans()):
            messages.append({"role": "system",
                             "content": draw(st.one_of(words, st.lists(text_block(), min_size=1, max_size=2)))})
        blocks = [{"type": "tool_result", "tool_use_id": i, **draw(maybe_cache),
                   **({} if (c := draw(tool_result_content())) is None else {"content": c})} for i in pending]
        extra = draw(user_content())
        if blocks:
            extra_blocks = [{"type": "text", "text": extra}] if isinstance(extra, str) else extra
            blocks += draw(st.sampled_from([[], extra_blocks]))
            content = draw(st.permutations(blocks))
        else:
            content = extra
        messages.append({"role": "user", "content": list(content) if isinstance(content, (list, tuple)) else content})
        if draw(st.booleans()):
            messages.append({"role": "system", "content": draw(words)})
        assistant = []
        if draw(st.booleans()):
            assistant.append({"type": "thinking", "thinking": draw(words), "signature": "sig"})
        if draw(st.booleans()):
            assistant.append(draw(text_block()))
        pending = []
        for _ in range(draw(st.integers(0, 3))):
            counter += 1
            pending.append(f"toolu_{counter}")
            assistant.append({"type": "tool_use", "id": pending[-1],
                              "name": draw(st.sampled_from(["Read", "Bash", "Agent"])),
                              "input": {"x": draw(words)}, **draw(maybe_cache)})
        if not assistant:
            assistant = draw(words)
        messages.append({"role": "assistant", "content": assistant})
    if pending:
        messages.append({"role": "user",
                         "content": [{"type": "tool_result", "tool_use_id": i, "content": "ok"} for i in pending]})
    return messages


@st.composite
def tool_definition(draw):
    if draw(st.integers(0, 4)) == 0:
        return {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
    tool = {"name": draw(st.sampled_from(["Read", "Bash", "Agent", "ToolSearch"])),
            "description": draw(words), "input_schema": {"type": "object", "properties": {}}}
    tool.update(draw(st.sampled_from([{}, {"cache_control": EPHEMERAL}, {"defer_loading": True}, {"type": "custom"}])))
    return tool


@st.composite
def anthropic_request(draw):
    data = {"model": "qwen-3-coder-480b", "max_tokens": draw(st.integers(1, 64000)), "messages": draw(conversation())}
    system = draw(st.sampled_from(["none", "string", "array"]))
    if system == "string":
        data["system"] = draw(words)
    elif system == "array":
        data["system"] = [{"type": "text", "text": BILLING_LINE}] + draw(st.lists(text_block(), max_size=3))
    if draw(st.booleans()):
        data["tools"] = draw(st.lists(tool_definition(), max_size=4))
        data["tool_choice"] = draw(st.sampled_from([{"type": "auto"}, {"type": "any"}, {"type": "none"},
                                                    {"type": "tool", "name": "Read"},
                                                    {"type": "tool", "name": "web_search"}]))
    optional = {
        "thinking": {"type": "adaptive"}, "context_management": {"edits": []}, "output_config": {"effort": "high"},
        "metadata": {"user_id": "u"}, "stream": True, "temperature": 1, "top_k": 3, "stop_sequences": ["X"],
        "litellm_metadata": {"k": 1}, "unknown_field": 1,
    }
    for key in draw(st.lists(st.sampled_from(sorted(optional)), unique=True)):
        data[key] = optional[key]
    return data


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)


@st.composite
def corrupted_request(draw):
    """An Anthropic-shaped request with one part replaced by arbitrary JSON."""
    data = draw(anthropic_request())
    paths = [("top", k) for k in data]
    for i, msg in enumerate(data["messages"]):
        paths.append(("msg", i))
        if isinstance(msg["content"], list):
            paths += [("block", i, j) for j in range(len(msg["content"]))]
    path = draw(st.sampled_from(paths))
    junk = draw(json_values)
    if path[0] == "top":
        data[path[1]] = junk
    elif path[0] == "msg":
        data["messages"][path[1]] = junk if draw(st.booleans()) else {**data["messages"][path[1]], "content": junk}
    else:
        data["messages"][path[1]]["content"][path[2]] = junk
    return data


def _ids(data, kind, key):
    return Counter(b.get(key) for b in walk_blocks(data) if b.get("type") == kind)


@SETTINGS
@given(st.one_of(json_values, corrupted_request(), anthropic_request()))
def test_normalization_never_raises(data):
    normalize(data)


@SETTINGS
@given(anthropic_request())
def test_normalization_never_loses_a_tool_use_or_tool_result(data):
    out = normalize(data)
    assert tool_pairs(out) == tool_pairs(data)
    assert _ids(out, "tool_use", "id") == _ids(data, "tool_use", "id")
    assert _ids(out, "tool_result", "tool_use_id") == _ids(data, "tool_result", "tool_use_id")


@SETTINGS
@given(st.one_of(anthropic_request(), corrupted_request()))
def test_normalizing_twice_equals_normalizing_once(data):
    once = normalize(data)
    assert normalize(copy.deepcopy(once)) == once


@SETTINGS
@given(anthropic_request())
def test_normalization_leaves_no_text_only_lists_and_no_cache_control(data):
    out = normalize(data)
    assert text_only_lists(out) == []
    assert [b for b in walk_blocks(out) if "cache_control" in b] == []
    assert isinstance(out.get("system", ""), str)
    assert all(m["role"] in ("user", "assistant") for m in out["messages"])


@SETTINGS
@given(anthropic_request())
def test_tool_uses_are_answered_by_a_message_of_tool_results_only(data):
    msgs = normalize(data)["messages"]
    for i, msg in enumerate(msgs):
        ids = [b["id"] for b in msg["content"] if b["type"] == "tool_use"] if isinstance(msg["content"], list) else []
        if ids:
            answer = msgs[i + 1]["content"]
            assert isinstance(answer, list) and {b["type"] for b in answer} == {"tool_result"}
            assert sorted(b["tool_use_id"] for b in answer) == sorted(ids)
            assert all(isinstance(b["content"], str) and b["content"].strip() for b in answer)


@SETTINGS
@given(st.one_of(anthropic_request(), corrupted_request()))
def test_normalization_never_modifies_its_input(data):
    before = json.dumps(data, sort_keys=True)
    normalize(data)
    assert json.dumps(data, sort_keys=True) == before
