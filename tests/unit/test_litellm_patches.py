"""ccq_proxy/litellm_patches.py's plain-Python parts (items k, and the shared guard).

The guard (guard.py: one version check, one source fingerprint, one patch marker) serves the
patches and the stream fast path alike; here it runs on stand-in functions and
versions.  Against a real LiteLLM 1.74.0.post2: tests/integration/test_callback_litellm.py
(the patches' effects) and test_stream_fastpath_litellm.py (the guard's refusals).
"""

from __future__ import annotations

import asyncio

import pytest

from helpers.callback_support import load_patches
from helpers.modules import load_proxy_module

patches = load_patches()
guard = load_proxy_module("guard")


# ---------------------------------------------------------------- k. upstream errors
class UpstreamError(Exception):
    def __init__(self, status_code):
        super().__init__(f"upstream {status_code}")
        self.status_code = status_code


def _adapter_error(status_code):
    """Raise the way LiteLLM 1.74's adapter does: a ValueError inside except."""
    try:
        raise UpstreamError(status_code)
    except Exception as exc:  # noqa: BLE001 - as the adapter does
        raise ValueError(f"Error calling litellm.acompletion for non-Anthropic model: {exc}")  # noqa: B904


@pytest.mark.parametrize("status", [400, 401, 404, 413, 422, 429, 500, 503, 529])
def test_the_upstream_error_is_found_behind_the_adapter_value_error(status):
    with pytest.raises(ValueError) as info:
        _adapter_error(status)
    assert patches.upstream_error(info.value).status_code == status


def test_errors_without_an_upstream_status_are_left_as_they_are():
    assert patches.upstream_error(ValueError("Bad Request: messages is required")) is None
    assert patches.upstream_error(KeyError("x")) is None


def test_wrapped_handler_reraises_the_upstream_error_itself():
    async def handler(**_kwargs):
        _adapter_error(429)

    wrapped = patches._pass_through_upstream_errors(handler)
    with pytest.raises(UpstreamError) as info:
        asyncio.run(wrapped(model="m"))
    assert info.value.status_code == 429


def test_wrapped_handler_returns_what_the_handler_returns():
    async def handler(**kwargs):
        return kwargs["model"]

    assert asyncio.run(patches._pass_through_upstream_errors(handler)(model="m")) == "m"


# ---------------------------------------------------------------- CCQ_LITELLM_PATCHES
@pytest.mark.parametrize("value, enabled", [(None, True), ("1", True), ("0", False), (" 0 ", False)])
def test_patches_can_be_switched_off_by_environment(value, enabled):
    environ = {} if value is None else {"CCQ_LITELLM_PATCHES": value}
    assert patches.litellm_patches_enabled(environ) is enabled


# ---------------------------------------------------------------- the shared guard
def test_patches_refuse_any_other_litellm_version_before_patching_anything():
    # Without LiteLLM here, anything past the version check would fail on its import.
    with pytest.raises(RuntimeError, match=r"1\.74\.0\.post2") as refused:
        patches.apply_litellm_patches(litellm_version="1.75.8")
    assert "LiteLLM 1.75.8 is installed" in str(refused.value)
    assert "CCQ_LITELLM_PATCHES=0" in str(refused.value)


def test_the_fast_path_refuses_another_openai_series(monkeypatch):
    versions = {"litellm": "1.74.0.post2", "openai": "1.100.0"}
    monkeypatch.setattr(guard, "installed_version", versions.__getitem__)
    patches.PATCHES_GUARD.require_version()  # the patches need no particular openai
    with pytest.raises(RuntimeError, match=r"openai 1\.99\.x, but openai 1\.100\.0") as refused:
        patches.STREAM_FASTPATH_GUARD.require_version()
    assert "CCQ_STREAM_FASTPATH=0" in str(refused.value)


def _litellm_function():
    """Stands in for a LiteLLM function a patch replaces."""
    return "the recorded source"


def test_a_changed_source_is_refused_and_named():
    recorded = {"Adapter.f": guard.source_hash(_litellm_function)}
    patches.PATCHES_GUARD.require_sources(recorded, {"Adapter.f": _litellm_function})
    with pytest.raises(RuntimeError, match=r"\['Adapter.f'\]; set CCQ_LITELLM_PATCHES=0"):
        patches.PATCHES_GUARD.require_sources({"Adapter.f": "0" * 16}, {"Adapter.f": _litellm_function})


@pytest.mark.parametrize("recorded, functions", [({}, {"new": _litellm_function}), ({"gone": "0" * 16}, {})])
def test_a_function_in_only_one_of_the_tables_is_refused(recorded, functions):
    with pytest.raises(RuntimeError, match=next(iter(recorded or functions))):
        patches.STREAM_FASTPATH_GUARD.require_sources(recorded, functions)


def test_a_marked_patch_hashes_as_the_function_it_wraps():
    def wrapper():
        return _litellm_function()

    assert not guard.is_marked(_litellm_function)
    marked = guard.mark(wrapper, _litellm_function)
    assert marked is wrapper and guard.is_marked(marked)
    assert guard.source_hash(marked) == guard.source_hash(_litellm_function)

