"""The hook object (ccq_proxy/hook.py) and custom_callbacks.py, which makes it (item i), plain Python.

The response-side patches are tested in test_litellm_patches.py; what needs a
real LiteLLM 1.74.0.post2 is in tests/integration/test_callback_litellm.py.
"""

from __future__ import annotations

import asyncio
import copy

import pytest

from helpers.callback_support import cerebras_policy, claude_code_request, load_callbacks
from helpers.modules import load_proxy_module

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

    monkeypatch.setattr(load_proxy_module("hook").normalizer, "normalize_request", broken)
    data = claude_code_request()
    assert run_hook(data, "text_completion") is data


def test_hook_reads_its_ceiling_from_the_environment(monkeypatch):
    monkeypatch.setenv("CCQ_MAX_TOKENS_CEILING", "4096")
    hook = cc.CcqAnthropicNormalizer(policy=cerebras_policy())
    assert run_hook(claude_code_request(), "text_completion", hook)["max_tokens"] == 4096


def test_module_exposes_the_instance_config_yaml_names():
    assert isinstance(cc.proxy_handler_instance, cc.CcqAnthropicNormalizer)
    assert callable(cc.ccq_master_key_auth)
    # LiteLLM only calls a CustomLogger's pre-call hook when the class itself
    # defines it (ProxyLogging.pre_call_hook checks vars(type(callback))).
    assert "async_pre_call_hook" in vars(cc.CcqAnthropicNormalizer)
