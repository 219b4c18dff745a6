"""The stream fast path's guards against a real LiteLLM 1.74.0.post2 (item l).

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

from callback_support import CALLBACK_FILE

pytestmark = pytest.mark.integration

PRELUDE = f"""
import importlib.util, json, sys
import litellm.proxy.proxy_server  # the proxy imports this before the callback
from litellm.llms.anthropic.experimental_pass_through.adapters import transformation as tf

def load_callbacks():
    spec = importlib.util.spec_from_file_location("custom_callbacks", {str(CALLBACK_FILE)!r})
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
"""


def run(python: str, body: str, tmp_path: Path, **env: str) -> tuple[int, Any, str]:
    """Run PRELUDE + body; return (exit code, the JSON it printed last, stderr)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CEREBRAS_", "LITELLM_", "CCQ_"))}
    clean.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", **env})
    proc = subprocess.run([python, "-c", PRELUDE + textwrap.dedent(body)], capture_output=True, text=True,
                          timeout=180, env=clean, cwd=tmp_path)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, json.loads(lines[-1]) if lines else None, proc.stderr


REFUSALS = {
    "litellm": ("md.version = lambda p: '1.75.0' if p == 'litellm' else real(p)", "1.74.0.post2"),
    "openai": ("md.version = lambda p: '1.100.0' if p == 'openai' else real(p)", "openai"),
    "source": ("fp.FINGERPRINTS['CustomStreamWrapper.chunk_creator'] = '0' * 16", "chunk_creator"),
}


@pytest.fixture(scope="module")
def installed(litellm_python: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One process (importing the proxy takes seconds): the callback loaded as the proxy
    loads it, then the version guard re-run under each simulated mismatch."""
    checks = "".join(f"""
        try:
            {change}
            fp.check_versions()
            out["refusals"][{name!r}] = None
        except RuntimeError as exc:
            out["refusals"][{name!r}] = str(exc)
        md.version = real
        fp.FINGERPRINTS.update(recorded)
    """ for name, (change, _) in REFUSALS.items())
    code, out, err = run(litellm_python, """
        import importlib.metadata as md
        real = md.version
        cc = load_callbacks()
        fp = sys.modules["ccq_stream_fastpath"]
        recorded = dict(fp.FINGERPRINTS)
        fn = tf.AnthropicAdapter.translate_completion_output_params_streaming
        out = {"patched": fn.__name__, "fp": fp._installed, "now": fp.fingerprints(),
               "recorded": recorded, "refusals": {}}
    """ + checks + """
        print(json.dumps(out))
    """, tmp_path_factory.mktemp("fastpath"))
    assert code == 0, err
    return out


def test_callback_installs_the_fast_path_after_its_fixes(installed: dict[str, Any]) -> None:
    assert installed["patched"] == "_patched_translate"
    assert installed["fp"].startswith("ccq stream fast path on litellm 1.74.0.post2")


def test_source_fingerprints_match_the_pinned_litellm_after_ccqs_wrappers(installed: dict[str, Any]) -> None:
    assert installed["now"] == installed["recorded"]


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_fast_path_refuses_other_litellm_or_openai_sources(installed: dict[str, Any], name: str) -> None:
    message = installed["refusals"][name]
    assert message and REFUSALS[name][1] in message


def test_fast_path_off_keeps_litellms_own_path_with_ccqs_translator(litellm_python: str, tmp_path: Path) -> None:
    code, out, err = run(litellm_python, """
        cc = load_callbacks()
        fn = tf.AnthropicAdapter.translate_completion_output_params_streaming
        print(json.dumps({"ccq": getattr(fn, "_ccq_patched", False), "module": fn.__module__,
                          "loaded": "ccq_stream_fastpath" in sys.modules}))
    """, tmp_path, CCQ_STREAM_FASTPATH="0")
    assert code == 0, err
    assert out["ccq"] is True and out["loaded"] is False
    assert out["module"] != "ccq_stream_fastpath"


def test_fast_path_refuses_to_run_without_ccqs_stream_translation(litellm_python: str, tmp_path: Path) -> None:
    code, out, err = run(litellm_python, """
        spec = importlib.util.spec_from_file_location("fp", %r)
        fp = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(fp)
        try:
            fp.install(None)
            print(json.dumps({"raised": None}))
        except RuntimeError as exc:
            print(json.dumps({"raised": str(exc)}))
    """ % str(CALLBACK_FILE.with_name("ccq_stream_fastpath.py")), tmp_path)
    assert code == 0, err
    assert "custom_callbacks" in (out["raised"] or "")
