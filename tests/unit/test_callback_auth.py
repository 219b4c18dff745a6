"""The proxy admits only its master key (general_settings.custom_auth)."""

from __future__ import annotations

import asyncio

import pytest

from helpers.modules import load_proxy_module

cb = load_proxy_module("hook")  # what custom_callbacks.py names as the proxy's custom_auth
MASTER = "sk-ccq-test-master"


def test_master_key_is_admitted():
    assert cb.is_master_key(MASTER, {"LITELLM_MASTER_KEY": MASTER})


@pytest.mark.parametrize("presented", ["", None, "sk-ccq-test-maste", MASTER + "x", "Bearer " + MASTER, 42])
def test_anything_but_the_master_key_is_refused(presented):
    assert not cb.is_master_key(presented, {"LITELLM_MASTER_KEY": MASTER})


def test_an_unset_master_key_admits_nobody():
    assert not cb.is_master_key("", {})
    assert not cb.is_master_key("anything", {"LITELLM_MASTER_KEY": ""})


def test_refusal_never_echoes_the_presented_key(monkeypatch):
    monkeypatch.setenv("LITELLM_MASTER_KEY", MASTER)
    with pytest.raises(PermissionError) as refused:
        asyncio.run(cb.ccq_master_key_auth(None, "sk-presented-secret"))
    assert "sk-presented-secret" not in str(refused.value)
