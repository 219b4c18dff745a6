"""The start-up cut on the pinned LiteLLM (ccq_proxy/startup.py): the proxy, started with the
role's environment file (which names before_litellm/ on PYTHONPATH), serves what Claude Code
and ccq doctor use and builds none of LiteLLM's other routes; with CCQ_ONLY_SERVED_ROUTES=0
it builds them all. Every relay test in this directory runs on the cut proxy too."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from helpers.http import request
from helpers.modules import NO_BYTECODE_ENV, PROXY_FILES
from helpers.stack import LiteLLMProxy, pick_callback

pytestmark = pytest.mark.integration

# A route of LiteLLM's key management: built by LiteLLM, not served by ccq.
NOT_SERVED = "/key/info"


def get(proxy_url: str, token: str, path: str) -> int:
    return request("GET", proxy_url + path, None, {"Authorization": f"Bearer {token}"}).status


def test_the_recorded_fingerprints_are_the_locked_litellms(litellm_venv: Path) -> None:
    done = subprocess.run(
        [str(litellm_venv / "bin/python"), "-c",
         "import json; from ccq_proxy import startup; print(json.dumps([startup.FILE_FINGERPRINTS, "
         "startup.file_hashes(), startup.why_not_cut({})]))"],
        capture_output=True, text=True, check=True, env={"PYTHONPATH": str(PROXY_FILES), **NO_BYTECODE_ENV})
    recorded, installed, reason = json.loads(done.stdout)
    assert recorded == installed and reason == "", "run `make record-patch-sources` (docs/upgrading.md)"


def test_with_the_cut_litellm_runs_as_without_the_mcp_sdk(litellm_venv: Path) -> None:
    # As the proxy's environment file starts it: sitecustomize runs the cut before LiteLLM.
    done = subprocess.run(
        [str(litellm_venv / "bin/python"), "-c",
         "import sys, litellm.proxy.proxy_server; "
         "from litellm.proxy._experimental.mcp_server import server, utils; "
         "print(server.MCP_AVAILABLE, utils.is_mcp_available(), sys.modules.get('mcp'))"],
        capture_output=True, text=True, check=True,
        env={"PYTHONPATH": str(PROXY_FILES / "ccq_proxy/before_litellm"), "LITELLM_LOCAL_MODEL_COST_MAP": "True",
             **NO_BYTECODE_ENV})
    assert done.stdout.split() == ["False", "False", "None"], done.stderr[-2000:]


def test_the_proxy_serves_what_ccq_uses_and_builds_no_other_route(proxy_stack) -> None:
    for path in ("/v1/models", "/health/readiness", "/health/liveliness"):
        assert get(proxy_stack.url, proxy_stack.token, path) == 200, path
    assert get(proxy_stack.url, proxy_stack.token, NOT_SERVED) == 404
    assert "every LiteLLM route is kept" not in proxy_stack.proxy.log_path.read_text(errors="replace")


def test_turned_off_the_proxy_builds_every_route(tmp_path: Path, litellm_venv: Path, make_fake) -> None:
    proxy = LiteLLMProxy(litellm_venv, tmp_path / "litellm", make_fake(), callback=pick_callback(),
                         extra_env={"CCQ_ONLY_SERVED_ROUTES": "0"}).start()
    try:
        # LiteLLM's own answer for a proxy without a database: the route exists.
        assert get(proxy.url, proxy.master_key, NOT_SERVED) != 404
        assert get(proxy.url, proxy.master_key, "/v1/models") == 200
    finally:
        proxy.stop()
