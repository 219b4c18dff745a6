"""Request-side normalization (ccq_proxy/normalizer.py, items a-h and bad input), plain Python.

Each test feeds an Anthropic body shaped like Claude Code 2.x's through
normalize_request with the LiteLLM 1.74.0.post2 cerebras policy and checks
the one behaviour its name states.
"""

from __future__ import annotations

import copy
import json

import pytest

from helpers.callback_support import (
    BILLING_LINE,
    EPHEMERAL,
    cerebras_policy,
    claude_code_payloads,
    claude_code_request,
    load_normalizer,
    normalize,
    openai_rule_violations,
    text,
    text_only_lists,
    tool_def,
    tool_result,
    tool_use,
    walk_blocks,
)

norm = load_normalizer()


def body(messages=None, **fields):
    """A minimal well-formed request plus the given fields."""
    return {"model": "m", "max_tokens": 100,
            "messages": messages or [{"role": "user", "content": "hi"}], **fields}


# ---------------------------------------------------------------- a. strip
def test_thinking_context_management_and_output_config_are_removed():
    out = normalize(claude_code_request())
    assert not {"thinking", "context_management", "output_config"} & set(out)


@pytest.mark.parametrize("field, value", [
    ("top_k", 5),
    ("container", "c1"),
    ("mcp_servers", [{"type": "url", "url": "http://127.0.0.1:1", "name": "x"}]),
    ("service_tier", "auto"),
    ("output_format", {"type": "json_schema", "schema": {}}),
])
def test_anthropic_fields_without_a_supported_counterpart_are_removed(field, value):
    assert field not in normalize(body(**{field: value}))


def test_field_survives_exactly_when_the_provider_policy_supports_it():
    # The policy is what LiteLLM's CerebrasConfig says; prove it is what decides.
    supported = cerebras_policy().supported
    with_temp = normalize(body(temperature=0.2), policy=cerebras_policy())
    without_temp = normalize(body(temperature=0.2), policy=cerebras_policy(supported=supported - {"temperature"}))
    assert with_temp["temperature"] == 0.2
    assert "temperature" not in without_temp


@pytest.mark.parametrize("field", ["reasoning_effort", "parallel_tool_calls", "logprobs", "n"])
def test_openai_parameters_litellm_would_reject_for_cerebras_are_removed(field):
    assert field not in normalize(body(**{field: True}))


def test_unknown_top_level_fields_are_removed_but_litellm_internal_keys_stay():
    data = body(some_future_field={"x": 1}, litellm_metadata={"k": "v"},
                proxy_server_request={"url": "/v1/messages"})
    out = normalize(data)
    assert "some_future_field" not in out
    assert out["litellm_metadata"] == {"k": "v"}
    assert out["proxy_server_request"] == {"url": "/v1/messages"}


def test_supported_fields_keep_their_values():
    out = normalize(body(stream=True, temperature=1, top_p=0.9, seed=7))
    assert (out["stream"], out["temperature"], out["top_p"], out["seed"]) == (True, 1, 0.9, 7)


def test_stop_sequences_become_openai_stop():
    out = normalize(body(stop_sequences=["END"]))
    assert "stop_sequences" not in out
    assert out["stop"] == ["END"]


def test_claude_code_device_and_session_ids_never_reach_the_upstream():
    user_id = '{"device_id":"d3v1ce","account_uuid":"","session_id":"s3ss10n"}'
    assert "metadata" not in normalize(body(metadata={"user_id": user_id}))
    assert "user" not in normalize(body(metadata={"user_id": user_id}))


@pytest.mark.parametrize("name", sorted(claude_code_payloads()))
def test_cache_control_is_removed_everywhere(name):
    data = claude_code_payloads()[name]
    assert any("cache_control" in b for b in walk_blocks(data)), "payload should carry cache_control"
    out = normalize(data)
    assert [b for b in walk_blocks(out) if "cache_control" in b] == []


def test_cache_control_is_removed_from_image_and_other_blocks():
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="},
             "cache_control": EPHEMERAL}
    out = normalize(body([{"role": "user", "content": [text("look"), image]}]), takes_images=True)
    assert out["messages"][0]["content"][1] == {k: v for k, v in image.items() if k != "cache_control"}


# ---------------------------------------------------------------- b. system messages
def test_system_messages_are_folded_into_system_in_order():
    data = body([
        {"role": "system", "content": "first"},
        {"role": "user", "content": "hi"},
        {"role": "system", "content": [text("second"), text("third")]},
        {"role": "assistant", "content": "ok"},
    ], system="top")
    out = normalize(data)
    assert [m["role"] for m in out["messages"]] == ["user", "assistant"]
    assert out["system"] == "top\n\nfirst\n\nsecond\nthird"


def test_system_message_between_tool_use_and_its_result_no_longer_separates_them():
    data = body([
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [tool_use("t1")]},
        {"role": "system", "content": "reminder"},
        {"role": "user", "content": [tool_result("t1")]},
    ])
    out = normalize(data)
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    assert out["system"] == "reminder"


# ---------------------------------------------------------------- c. system array
def test_system_array_becomes_one_string():
    out = normalize(body(system=[text("a", cache_control=EPHEMERAL), text("b")]))
    assert out["system"] == "a\n\nb"


def test_billing_header_block_is_removed_from_system():
    out = normalize(body(system=[text(BILLING_LINE), text("You are Claude Code.")]))
    assert out["system"] == "You are Claude Code."


def test_billing_header_line_inside_a_text_is_removed():
    out = normalize(body(system=f"{BILLING_LINE}\nYou are Claude Code.\nBe brief."))
    assert out["system"] == "You are Claude Code.\nBe brief."


def test_system_is_identical_across_requests_that_differ_only_in_billing_header():
    first = normalize(body(system=[text(BILLING_LINE), text("prompt")]))
    second = normalize(body(system=[text(BILLING_LINE.replace("cch=1a2b3", "cch=9z9z9")), text("prompt")]))
    assert first["system"] == second["system"] == "prompt"


def test_system_with_only_a_billing_header_is_dropped():
    assert "system" not in normalize(body(system=[text(BILLING_LINE)]))


# ---------------------------------------------------------------- d. content lists
def test_text_only_content_list_becomes_a_string():
    out = normalize(body([{"role": "user", "content": [text("a"), text("b", cache_control=EPHEMERAL)]}]))
    assert out["messages"][0]["content"] == "a\nb"


def test_mixed_content_keeps_tool_use_and_image_blocks_as_blocks():
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}
    out = normalize(body([
        {"role": "user", "content": [text("see"), image]},
        {"role": "assistant", "content": [text("reading"), tool_use("t1")]},
        {"role": "user", "content": [tool_result("t1")]},
    ]), takes_images=True)
    assert out["messages"][0]["content"] == [text("see"), image]
    assert out["messages"][1]["content"] == [text("reading"), tool_use("t1")]
    assert out["messages"][2]["content"] == [tool_result("t1")]


def test_thinking_blocks_are_dropped_so_the_turn_folds_to_text():
    out = normalize(body([
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"}, text("a")]},
    ]))
    assert out["messages"][1]["content"] == "a"


# ---------------------------------------------------------------- e. tool results
def _result_content(out, index=-1):
    blocks = [b for m in out["messages"] if isinstance(m["content"], list) for b in m["content"]
              if b["type"] == "tool_result"]
    return blocks[index]["content"]


def test_tool_result_text_blocks_become_one_string():
    data = body([
        {"role": "assistant", "content": [tool_use("t1", "Agent")]},
        {"role": "user", "content": [tool_result("t1", [text("report"), text("agentId: a1")])]},
    ])
    assert _result_content(normalize(data)) == "report\nagentId: a1"


@pytest.mark.parametrize("content", [None, "", "   \n", []], ids=["missing", "empty", "blank", "empty-list"])
def test_empty_tool_result_gets_a_placeholder(content):
    data = body([
        {"role": "assistant", "content": [tool_use("t1")]},
        {"role": "user", "content": [tool_result("t1", content)]},
    ])
    assert _result_content(normalize(data)) == norm.EMPTY_TOOL_RESULT_PLACEHOLDER


IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}


def test_tool_result_image_is_named_in_a_note_for_a_text_only_model():
    data = body([
        {"role": "assistant", "content": [tool_use("t1")]},
        {"role": "user", "content": [tool_result("t1", [text("screenshot:"), IMAGE])]},
    ])
    out = normalize(data)
    assert _result_content(out) == "screenshot:\n[image (image/png) omitted: the model behind ccq takes text only]"
    assert "AA==" not in json.dumps(out)


def test_a_user_image_becomes_a_note_for_a_text_only_model():
    out = normalize(body([{"role": "user", "content": [text("what is this?"), IMAGE]}]))
    assert out["messages"] == [{"role": "user", "content":
                                "what is this?\n[image (image/png) omitted: the model behind ccq takes text only]"}]


def test_a_pdf_document_becomes_a_note_even_for_a_vision_model():
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}
    out = normalize(body([{"role": "user", "content": [text("summarize"), pdf]}]), takes_images=True)
    assert out["messages"][0]["content"] == ("summarize\n[document (application/pdf) omitted: "
                                             "the model behind ccq takes text only]")


def test_a_tool_results_image_follows_the_tool_results_for_a_vision_model():
    data = body([
        {"role": "assistant", "content": [tool_use("t1")]},
        {"role": "user", "content": [tool_result("t1", [text("screenshot:"), IMAGE]), text("and?")]},
    ])
    out = normalize(data, takes_images=True)
    results, rest = out["messages"][1], out["messages"][2]
    assert results["content"][0]["content"] == "screenshot:\n[image: attached after the tool results]"
    assert rest == {"role": "user", "content": [text("and?"), IMAGE]}


def test_an_image_with_a_source_no_data_url_can_carry_becomes_a_note():
    odd = {"type": "image", "source": {"type": "file", "file_id": "f_1"}}
    out = normalize(body([{"role": "user", "content": [text("x"), odd]}]), takes_images=True)
    assert out["messages"][0]["content"] == "x\n[image omitted: the model behind ccq takes text only]"


def test_tool_result_is_error_flag_is_kept():
    data = body([
        {"role": "assistant", "content": [tool_use("t1")]},
        {"role": "user", "content": [tool_result("t1", "boom", is_error=True)]},
    ])
    out = normalize(data)
    assert out["messages"][1]["content"][0]["is_error"] is True


# ---------------------------------------------------------------- f. ordering
def test_tool_results_come_before_user_text():
    data = body([
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [tool_use("t1"), tool_use("t2")]},
        {"role": "user", "content": [text("before"), tool_result("t1"), text("after"), tool_result("t2")]},
    ])
    out = normalize(data)
    assert out["messages"][2] == {"role": "user", "content": [tool_result("t1"), tool_result("t2")]}
    assert out["messages"][3] == {"role": "user", "content": "before\nafter"}


def test_consecutive_user_messages_are_merged_before_splitting():
    data = body([
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [tool_use("t1")]},
        {"role": "user", "content": "interjection"},
        {"role": "user", "content": [tool_result("t1")]},
    ])
    out = normalize(data)
    assert [m["content"] for m in out["messages"][2:]] == [[tool_result("t1")], "interjection"]


def test_consecutive_assistant_messages_are_merged():
    data = body([
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "thinking aloud"},
        {"role": "assistant", "content": [tool_use("t1")]},
        {"role": "user", "content": [tool_result("t1")]},
    ])
    out = normalize(data)
    assert out["messages"][1] == {"role": "assistant", "content": [text("thinking aloud"), tool_use("t1")]}


@pytest.mark.parametrize("name", sorted(claude_code_payloads()))
def test_every_tool_use_is_answered_by_the_next_message_and_only_by_tool_results(name):
    out = normalize(claude_code_payloads()[name])
    msgs = out["messages"]
    for i, msg in enumerate(msgs):
        ids = [b["id"] for b in msg["content"] if b["type"] == "tool_use"] if isinstance(msg["content"], list) else []
        if not ids:
            continue
        answer = msgs[i + 1]["content"]
        assert isinstance(answer, list) and {b["type"] for b in answer} == {"tool_result"}
        assert sorted(b["tool_use_id"] for b in answer) == sorted(ids)


# ---------------------------------------------------------------- g. tools
def test_tool_definitions_keep_only_name_description_and_schema():
    tools = [tool_def("Bash", cache_control=EPHEMERAL), tool_def("Later", defer_loading=True, type="custom")]
    out = normalize(body(tools=tools))
    assert [sorted(t) for t in out["tools"]] == [["description", "input_schema", "name"]] * 2


def test_tool_schema_object_is_shared_not_copied():
    tools = [tool_def("Bash", cache_control=EPHEMERAL)]
    out = normalize(body(tools=tools))
    assert out["tools"][0]["input_schema"] is tools[0]["input_schema"]


def test_server_tools_without_input_schema_are_removed():
    tools = [tool_def("Bash"), {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]
    assert [t["name"] for t in normalize(body(tools=tools))["tools"]] == ["Bash"]


def test_tool_choice_naming_a_removed_tool_is_dropped():
    tools = [tool_def("Bash"), {"type": "web_search_20250305", "name": "web_search"}]
    out = normalize(body(tools=tools, tool_choice={"type": "tool", "name": "web_search"}))
    assert "tool_choice" not in out


def test_tool_choice_naming_an_offered_tool_is_kept():
    out = normalize(body(tools=[tool_def("Bash")], tool_choice={"type": "tool", "name": "Bash"}))
    assert out["tool_choice"] == {"type": "tool", "name": "Bash"}


def test_tools_and_tool_choice_are_dropped_when_only_server_tools_were_offered():
    out = normalize(body(tools=[{"type": "web_search_20250305", "name": "web_search"}],
                         tool_choice={"type": "any"}))
    assert "tools" not in out and "tool_choice" not in out


# ---------------------------------------------------------------- h. max_tokens
def test_max_tokens_above_the_ceiling_is_clamped():
    assert normalize(body(max_tokens=32000), ceiling=16384)["max_tokens"] == 16384


def test_max_tokens_below_the_ceiling_is_kept():
    assert normalize(body(max_tokens=512), ceiling=16384)["max_tokens"] == 512


def test_ceiling_is_read_from_the_environment():
    assert norm.max_tokens_ceiling_from_env({}) == norm.DEFAULT_MAX_TOKENS_CEILING == 16384
    assert norm.max_tokens_ceiling_from_env({"CCQ_MAX_TOKENS_CEILING": " 8192 "}) == 8192


@pytest.mark.parametrize("raw", ["lots", "0", "-5", "1.5"])
def test_invalid_ceiling_fails_loudly_naming_the_variable(raw):
    with pytest.raises(ValueError, match="CCQ_MAX_TOKENS_CEILING"):
        norm.max_tokens_ceiling_from_env({"CCQ_MAX_TOKENS_CEILING": raw})


# ---------------------------------------------------------------- bad input
MALFORMED = {
    "not a dict": ["messages"],
    "no messages": {"model": "m", "thinking": {"type": "adaptive"}},
    "messages not a list": {"model": "m", "messages": "hi", "thinking": {}},
    "empty messages": {"model": "m", "messages": [], "thinking": {}},
    "message not a dict": {"model": "m", "messages": ["hi"], "thinking": {}},
    "unknown role": {"model": "m", "messages": [{"role": "tool", "content": "x"}], "thinking": {}},
    "content neither list nor string": {"model": "m", "messages": [{"role": "user", "content": 5}], "thinking": {}},
    "content missing": {"model": "m", "messages": [{"role": "user"}], "thinking": {}},
    "block without type": {"model": "m", "messages": [{"role": "user", "content": [{"text": "x"}]}], "thinking": {}},
    "block not a dict": {"model": "m", "messages": [{"role": "user", "content": ["x"]}], "thinking": {}},
    "text not a string": {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]},
    "tool_use without id": {"model": "m", "messages": [
        {"role": "assistant", "content": [{"type": "tool_use", "name": "x"}]}]},
    "tool_result content a number": {"model": "m", "messages": [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": 3}]}]},
    "system a number": {"model": "m", "messages": [{"role": "user", "content": "x"}], "system": 3},
    "system block not text": {"model": "m", "messages": [{"role": "user", "content": "x"}],
                              "system": [{"type": "image"}]},
    "tools not a list": {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": {"name": "x"}},
    "tool without name": {"model": "m", "messages": [{"role": "user", "content": "x"}],
                          "tools": [{"input_schema": {}}]},
    "tool_choice a string": {"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"},
    "metadata a string": {"model": "m", "messages": [{"role": "user", "content": "x"}], "metadata": "u"},
    "only system messages": {"model": "m", "messages": [{"role": "system", "content": "x"}], "thinking": {}},
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_body_passes_through_unchanged(name):
    data = MALFORMED[name]
    before = copy.deepcopy(data)
    out = normalize(data)
    assert out is data
    assert data == before


@pytest.mark.parametrize("name", sorted(claude_code_payloads()))
def test_input_body_is_never_modified(name):
    data = claude_code_payloads()[name]
    before = json.dumps(data, sort_keys=True)
    normalize(data)
    assert json.dumps(data, sort_keys=True) == before


@pytest.mark.parametrize("name", sorted(claude_code_payloads()))
def test_claude_code_request_leaves_no_text_only_lists(name):
    data = claude_code_payloads()[name]
    assert text_only_lists(normalize(data)) == []


# ---------------------------------------------------------------- issue 21: history the adapter garbles
def as_openai(messages):
    """The OpenAI messages LiteLLM 1.74's adapter makes of normalized Anthropic turns
    (its order: a user turn's text, then its tool messages; an assistant's text, then calls)."""
    out = []
    for msg in messages:
        content = msg["content"]
        blocks = [text(content)] if isinstance(content, str) else content
        if msg["role"] == "user":
            texts = [b for b in blocks if b["type"] != "tool_result"]
            if texts:
                out.append({"role": "user", "content": texts})
            out += [{"role": "tool", "tool_call_id": b["tool_use_id"], "content": b["content"]}
                    for b in blocks if b["type"] == "tool_result"]
        else:
            calls = [{"id": b["id"], "type": "function", "function": {"name": b["name"], "arguments": "{}"}}
                     for b in blocks if b["type"] == "tool_use"]
            words = "".join(b["text"] for b in blocks if b["type"] == "text")
            if words or calls:
                out.append({"role": "assistant", "content": words or None, **({"tool_calls": calls} if calls else {})})
    return out


def test_two_assistant_text_blocks_are_separated_by_a_blank_line():
    out = normalize(body([{"role": "user", "content": "go"},
                          {"role": "assistant", "content": [text("Let me search the web."), text("Python 3.14 adds")]},
                          {"role": "user", "content": "thanks"}]))
    assert out["messages"][1]["content"] == "Let me search the web.\n\nPython 3.14 adds"


def test_assistant_text_around_a_tool_call_is_one_block_joined_by_a_blank_line():
    out = normalize(body([{"role": "user", "content": "go"},
                          {"role": "assistant", "content": [text("First."), tool_use("t1"), text("Second.")]},
                          {"role": "user", "content": [tool_result("t1")]}]))
    assert out["messages"][1]["content"] == [text("First.\n\nSecond."), tool_use("t1")]


WEB_SEARCH_TURN = [
    text("I'll search the web."),
    {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "python 3.14"}},
    {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [
        {"type": "web_search_result", "title": "What's new in Python 3.14", "url": "https://docs.python.org/3.14/whatsnew",
         "encrypted_content": "EqgfCioIARgBIiQ3YTAwMjY1Mi", "page_age": "2 days ago"}]},
    text("Python 3.14 adds template strings.", citations=[
        {"type": "web_search_result_location", "url": "https://docs.python.org/3.14/whatsnew",
         "title": "What's new in Python 3.14", "encrypted_index": "Eo8BCioIAhgBIiQ",
         "cited_text": "PEP 750: Template strings"}]),
]


def test_web_search_blocks_and_citations_keep_their_readable_part_as_text():
    out = normalize(body([{"role": "user", "content": "what's new in 3.14?"},
                          {"role": "assistant", "content": WEB_SEARCH_TURN},
                          {"role": "user", "content": "thanks"}]))
    said = out["messages"][1]["content"]
    assert isinstance(said, str)
    for part in ("I'll search the web.", "web_search", "python 3.14", "What's new in Python 3.14",
                 "https://docs.python.org/3.14/whatsnew", "Python 3.14 adds template strings.",
                 '"PEP 750: Template strings"'):
        assert part in said, part
    assert "encrypted" not in said and "EqgfCioIARgBIiQ3YTAwMjY1Mi" not in said and "{'type'" not in said
    assert "\n\n" in said


def test_a_web_search_error_result_says_so():
    block = {"type": "web_search_tool_result", "tool_use_id": "s1",
             "content": {"type": "web_search_tool_result_error", "error_code": "max_uses_exceeded"}}
    out = normalize(body([{"role": "user", "content": "go"}, {"role": "assistant", "content": [block]},
                          {"role": "user", "content": "and?"}]))
    assert "max_uses_exceeded" in out["messages"][1]["content"]


def test_a_failed_tool_result_tells_the_model_it_failed():
    data = body([{"role": "user", "content": "go"}, {"role": "assistant", "content": [tool_use("t1")]},
                 {"role": "user", "content": [tool_result("t1", "ls: /nope: No such file", is_error=True)]}])
    result = normalize(data)["messages"][2]["content"][0]
    assert result["content"] == "Error: ls: /nope: No such file"


def test_a_successful_tool_result_is_not_marked():
    data = body([{"role": "user", "content": "go"}, {"role": "assistant", "content": [tool_use("t1")]},
                 {"role": "user", "content": [tool_result("t1", "fine", is_error=False)]}])
    assert normalize(data)["messages"][2]["content"][0]["content"] == "fine"


def test_tool_choice_none_offers_no_tools():
    out = normalize(body(tools=[tool_def("Bash")], tool_choice={"type": "none"}))
    assert "tools" not in out and "tool_choice" not in out


@pytest.mark.parametrize("choice", [{"type": "auto"}, {"type": "any"}, {"type": "tool", "name": "Bash"}])
def test_tool_choice_without_tools_is_never_sent(choice):
    # Claude Code's auto-mode classifier sends requests without tools.
    assert "tool_choice" not in normalize(body(tool_choice=choice))


INTERRUPTED = {
    "interrupted_with_text": [
        {"role": "user", "content": "run it"},
        {"role": "assistant", "content": [text("Running."), tool_use("toolu_1", "Bash", command="sleep 99")]},
        {"role": "user", "content": [
            tool_result("toolu_1", "[Request interrupted by user for tool use]", is_error=True),
            text("[Request interrupted by user for tool use]"), text("do something else")]},
    ],
    "tool_use_without_any_result": [
        {"role": "user", "content": "run it"},
        {"role": "assistant", "content": [tool_use("toolu_1", "Bash", command="sleep 99")]},
        {"role": "user", "content": "never mind, say hi"},
    ],
    "one_of_two_calls_answered": [
        {"role": "user", "content": "read both"},
        {"role": "assistant", "content": [tool_use("toolu_1"), tool_use("toolu_2")]},
        {"role": "user", "content": [tool_result("toolu_2", "b")]},
    ],
    "resumed_session": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "I should read it.", "signature": "EuYBCkQYAiJA"},
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va"},
            tool_use("toolu_1")]},
        {"role": "user", "content": [text("(resumed)")]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "", "signature": "x"}, text("ok")]},
        {"role": "user", "content": [tool_result("toolu_1", "late result"), text("continue")]},
    ],
    "duplicate_ids": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [tool_use("call_0")]},
        {"role": "user", "content": [tool_result("call_0", "first")]},
        {"role": "assistant", "content": [tool_use("call_0"), tool_use("call_0")]},
        {"role": "user", "content": [tool_result("call_0", "second"), tool_result("call_0", "third")]},
    ],
    "orphan_result_first": [
        {"role": "user", "content": [tool_result("toolu_gone", "compacted away"), text("go on")]},
    ],
    "empty_id": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [tool_use("")]},
        {"role": "user", "content": [tool_result("", "r")]},
    ],
    "trailing_assistant_tool_use": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [text("Reading."), tool_use("toolu_9")]},
    ],
}


@pytest.mark.parametrize("name", sorted(INTERRUPTED))
def test_every_tool_call_is_answered_at_once_once_by_a_unique_id(name):
    out = normalize(body(INTERRUPTED[name], tools=[tool_def("Bash"), tool_def("Read")]))
    assert openai_rule_violations(as_openai(out["messages"])) == []


def test_the_rule_check_fails_on_the_old_normalizer_shape():
    # What 1.74 alone would send for an aborted turn: the check above can fail.
    raw = as_openai([{"role": "user", "content": "go"}, {"role": "assistant", "content": [tool_use("t1")]},
                     {"role": "user", "content": "hi"}])
    assert openai_rule_violations(raw)


def test_a_call_without_result_gets_a_synthetic_error_result_and_the_text_follows():
    out = normalize(body(INTERRUPTED["tool_use_without_any_result"]))
    assert out["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": norm.MISSING_TOOL_RESULT, "is_error": True}]}
    assert out["messages"][3] == {"role": "user", "content": "never mind, say hi"}


def test_an_interrupted_call_keeps_its_result_and_the_users_text():
    out = normalize(body(INTERRUPTED["interrupted_with_text"]))
    (result,) = out["messages"][2]["content"]
    assert result["tool_use_id"] == "toolu_1" and "interrupted" in result["content"]
    assert out["messages"][3]["content"].endswith("do something else")


def test_repeated_ids_are_renamed_deterministically_with_their_results():
    first = normalize(body(INTERRUPTED["duplicate_ids"]))
    again = normalize(body(INTERRUPTED["duplicate_ids"]))
    assert first == again  # the same history, the same ids: the prefix cache still matches
    calls = [b["id"] for m in first["messages"] if m["role"] == "assistant" for b in m["content"]
             if isinstance(b, dict) and b["type"] == "tool_use"]
    assert len(set(calls)) == 3 and calls[0] == "call_0"
    answers = {b["tool_use_id"]: b["content"] for m in first["messages"] if m["role"] == "user"
               and isinstance(m["content"], list) for b in m["content"] if b["type"] == "tool_result"}
    assert [answers[c] for c in calls] == ["first", "second", "third"]


def test_a_result_whose_call_is_gone_becomes_text():
    out = normalize(body(INTERRUPTED["resumed_session"]))
    assert out["messages"][2]["content"][0]["content"] == norm.MISSING_TOOL_RESULT
    assert "late result" in out["messages"][-1]["content"] and "toolu_1" in out["messages"][-1]["content"]
    assert "signature" not in json.dumps(out) and "EmwKAhgBEgy3va" not in json.dumps(out)
