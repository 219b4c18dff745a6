"""The hook object and the response-side patch pieces (items i, j, k), plain Python.

What needs a real LiteLLM 1.74.0.post2 is in test_callback_litellm.py.
"""

from __future__ import annotations

import asyncio
import copy
from types import SimpleNamespace

import pytest

from callback_support import cerebras_policy, claude_code_request, load_callbacks

cc = load_callbacks()


def run_hook(data, call_type, hook=None):
    hook = hook or cc.CcqAnthropicNormalizer(policy=cerebras_policy(), max_tokens_ceiling=16384)
    return asyncio.run(hook.async_pre_call_hook(user_api_key_dict=None, cache=None, data=data, call_type=call_type))


# ---------------------------------------------------------------- i. call types
@pytest.mark.parametrize("call_type", ["text_completion", "anthropic_messages"])
def test_hook_normalizes_both_anthropic_messages_call_types(call_type):
    out = run_hook(claude_code_request(), call_type)
    assert "thinking" not in out
    assert isinstance(out["system"], str)
    assert out["max_tokens"] == 16384


@pytest.mark.parametrize("call_type", ["completion", "acompletion", "atext_completion", "embeddings",
                                       "aresponses", "moderation", "pass_through_endpoint"])
def test_hook_leaves_other_endpoints_untouched(call_type):
    data = claude_code_request()
    before = copy.deepcopy(data)
    out = run_hook(data, call_type)
    assert out is data and data == before


def test_hook_answers_with_the_body_unchanged_when_normalization_fails(monkeypatch):
    def broken(*_args, **_kwargs):
        raise KeyError("unexpected")

    monkeypatch.setattr(cc, "normalize_request", broken)
    data = claude_code_request()
    assert run_hook(data, "text_completion") is data


def test_hook_reads_its_ceiling_from_the_environment(monkeypatch):
    monkeypatch.setenv("CCQ_MAX_TOKENS_CEILING", "4096")
    hook = cc.CcqAnthropicNormalizer(policy=cerebras_policy())
    assert run_hook(claude_code_request(), "text_completion", hook)["max_tokens"] == 4096


def test_module_exposes_the_instance_config_yaml_names():
    assert isinstance(cc.proxy_handler_instance, cc.CcqAnthropicNormalizer)
    # LiteLLM only calls a CustomLogger's pre-call hook when the class itself
    # defines it (ProxyLogging.pre_call_hook checks vars(type(callback))).
    assert "async_pre_call_hook" in vars(cc.CcqAnthropicNormalizer)


# ---------------------------------------------------------------- k. upstream errors
class UpstreamError(Exception):
    def __init__(self, status_code):
        super().__init__(f"upstream {status_code}")
        self.status_code = status_code


def _adapter_error(status_code):
    """Raise the way LiteLLM 1.74's adapter does: a ValueError inside except."""
    try:
        raise UpstreamError(status_code)
    except Exception as exc:
        raise ValueError(f"Error calling litellm.acompletion for non-Anthropic model: {exc}")


@pytest.mark.parametrize("status", [400, 401, 404, 413, 422, 429, 500, 503, 529])
def test_the_upstream_error_is_found_behind_the_adapter_value_error(status):
    with pytest.raises(ValueError) as info:
        _adapter_error(status)
    assert cc.upstream_error(info.value).status_code == status


def test_errors_without_an_upstream_status_are_left_as_they_are():
    assert cc.upstream_error(ValueError("Bad Request: messages is required")) is None
    assert cc.upstream_error(KeyError("x")) is None


def test_wrapped_handler_reraises_the_upstream_error_itself():
    async def handler(**_kwargs):
        _adapter_error(429)

    wrapped = cc._pass_through_upstream_errors(handler)
    with pytest.raises(UpstreamError) as info:
        asyncio.run(wrapped(model="m"))
    assert info.value.status_code == 429


def test_wrapped_handler_returns_what_the_handler_returns():
    async def handler(**kwargs):
        return kwargs["model"]

    assert asyncio.run(cc._pass_through_upstream_errors(handler)(model="m")) == "m"


# ---------------------------------------------------------------- version guard
def test_patches_refuse_any_other_litellm_version():
    with pytest.raises(RuntimeError, match="1.74.0.post2"):
        cc.apply_litellm_patches(installed_version="1.75.8")


@pytest.mark.parametrize("value, enabled", [(None, True), ("1", True), ("0", False), (" 0 ", False)])
def test_patches_can_be_switched_off_by_environment(value, enabled):
    environ = {} if value is None else {"CCQ_LITELLM_PATCHES": value}
    assert cc.litellm_patches_enabled(environ) is enabled
