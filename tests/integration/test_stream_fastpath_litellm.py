"""The shared guard (ccq_proxy/guard.py) against a real LiteLLM 1.74.0.post2
(the patches, items k-t, and the stream fast path, item l).

Each test runs a short script in the pinned LiteLLM venv (CCQ_LITELLM_PYTHON,
else the suite's cached venv), loading custom_callbacks.py by file path as
the proxy does.  Marked ``integration`` like test_callback_litellm.py: the
venv is built from PyPI on first use; no proxy is started.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from helpers.modules import CALLBACK_FILE, NO_BYTECODE_ENV, TESTS_DIR

pytestmark = pytest.mark.integration

PRELUDE = f"""
import json, sys
import litellm.proxy.proxy_server  # the proxy imports this before the callback
from litellm.llms.anthropic.experimental_pass_through.adapters import transformation as tf
from helpers.modules import load_file as load, load_proxy_module

def load_callbacks():
    return load({str(CALLBACK_FILE)!r}, "custom_callbacks")
"""


def run(python: str, body: str, tmp_path: Path, **env: str) -> tuple[int, Any, str]:
    """Run PRELUDE + body; return (exit code, the JSON it printed last, stderr)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CEREBRAS_", "LITELLM_", "CCQ_"))}
    clean.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(TESTS_DIR), **NO_BYTECODE_ENV, **env})
    proc = subprocess.run([python, "-c", PRELUDE + textwrap.dedent(body)], capture_output=True, text=True,
                          timeout=180, env=clean, cwd=tmp_path)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, json.loads(lines[-1]) if lines else None, proc.stderr


REFUSALS = {
    "litellm": ("md.version = lambda p: '1.75.0' if p == 'litellm' else real(p)", "1.74.0.post2"),
    "openai": ("md.version = lambda p: '1.100.0' if p == 'openai' else real(p)", "openai"),
    "source": ("fp.FINGERPRINTS['CustomStreamWrapper.chunk_creator'] = '0' * 16", "chunk_creator"),
    # A function the table names that the installed LiteLLM no longer has.
    "gone": ("fp.FINGERPRINTS['CustomStreamWrapper.gone_in_this_release'] = '0' * 16", "gone_in_this_release"),
}


@pytest.fixture(scope="module")
def installed(litellm_python: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One process (importing the proxy takes seconds): the callback loaded as the proxy
    loads it, then the version guard re-run under each simulated mismatch."""
    checks = "".join(f"""
        try:
            {change}
            patches.check_stream_fastpath()
            out["refusals"][{name!r}] = None
        except RuntimeError as exc:
            out["refusals"][{name!r}] = str(exc)
        md.version = real
        fp.FINGERPRINTS.clear()
        fp.FINGERPRINTS.update(recorded)
    """ for name, (change, _) in REFUSALS.items())
    code, out, err = run(litellm_python, """
        import importlib.metadata as md
        real = md.version
        cc = load_callbacks()
        patches = load_proxy_module("litellm_patches")
        fp = load_proxy_module("stream_fastpath")
        guard = load_proxy_module("guard")
        recorded = dict(fp.FINGERPRINTS)
        fn = tf.AnthropicAdapter.translate_completion_output_params_streaming
        out = {"patched": fn.__name__, "fp": fp.FAST_PATH.description, "recorded": recorded, "refusals": {},
               "now": guard.source_hashes(fp.reproduced_functions()),
               "patched_now": guard.source_hashes(patches.patched_functions()),
               "patched_recorded": dict(patches.PATCHED_SOURCES)}
    """ + checks + """
        print(json.dumps(out))
    """, tmp_path_factory.mktemp("fastpath"))
    assert code == 0, err
    return out


def test_callback_installs_the_fast_path_after_its_fixes(installed: dict[str, Any]) -> None:
    assert installed["patched"] == "relay_with_fast_path"
    assert installed["fp"].startswith("ccq stream fast path on litellm 1.74.0.post2")


def test_source_fingerprints_match_the_pinned_litellm_after_ccqs_wrappers(installed: dict[str, Any]) -> None:
    assert installed["now"] == installed["recorded"]
    assert installed["patched_now"] == installed["patched_recorded"]


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_fast_path_refuses_other_litellm_or_openai_sources(installed: dict[str, Any], name: str) -> None:
    message = installed["refusals"][name]
    assert message and REFUSALS[name][1] in message


def test_fast_path_off_keeps_litellms_own_path_with_ccqs_translator(litellm_python: str, tmp_path: Path) -> None:
    code, out, err = run(litellm_python, """
        cc = load_callbacks()
        fn = tf.AnthropicAdapter.translate_completion_output_params_streaming
        print(json.dumps({"ccq": getattr(fn, "_ccq_patched", False), "name": fn.__name__,
                          "installed": load_proxy_module("stream_fastpath").FAST_PATH.description}))
    """, tmp_path, CCQ_STREAM_FASTPATH="0")
    assert code == 0, err
    assert out["ccq"] is True and out["installed"] is None
    assert out["name"] == "translate_completion_output_params_streaming"  # item m's, not the fast path's


def test_fast_path_refuses_to_run_without_ccqs_stream_translation(litellm_python: str, tmp_path: Path) -> None:
    code, out, err = run(litellm_python, """
        patches = load_proxy_module("litellm_patches")
        try:
            patches.install_stream_fastpath({})
            print(json.dumps({"raised": None}))
        except RuntimeError as exc:
            print(json.dumps({"raised": str(exc)}))
    """, tmp_path)
    assert code == 0, err
    assert "apply ccq's LiteLLM patches first" in (out["raised"] or "")


def test_the_proxy_refuses_to_start_on_a_changed_litellm_source(litellm_python: str, tmp_path: Path) -> None:
    # What a LiteLLM with one patched function changed does to the callback's load: it
    # raises before patching anything, naming the function and the way out.
    code, out, err = run(litellm_python, """
        patches = load_proxy_module("litellm_patches")
        guard = load_proxy_module("guard")
        patches.PATCHED_SOURCES["Handler.async_anthropic_messages_handler"] = "0" * 16
        try:
            load_callbacks()
            raised = None
        except RuntimeError as exc:
            raised = str(exc)
        fn = tf.AnthropicAdapter.translate_completion_output_params_streaming
        print(json.dumps({"raised": raised, "patched": guard.is_marked(fn)}))
    """, tmp_path)
    assert code == 0, err
    assert "Handler.async_anthropic_messages_handler" in (out["raised"] or ""), out
    assert "CCQ_LITELLM_PATCHES=0" in out["raised"]
    assert out["patched"] is False
