"""Verify checks for a machine that `make provision` just converged, run on that machine.

The counterpart of molecule/default/tests for targets Molecule cannot build here: the macOS
CI job (launchd) and any Linux box converged with connection local. It runs only when
tests/platforms/converge_and_verify.sh asks for it (CCQ_VERIFY_LOCAL_HOST=1), because it
talks to the current user's own proxy and reads the current user's key files.

Environment: CCQ_VERIFY_PROXY_PORT (the converged ccq_proxy_port), CCQ_VERIFY_UPSTREAM_LOG
(the request log of the fake Cerebras the machine was converged against).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import stat
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers.http import assemble_stream
from helpers.installs import read_pins, versions_off_pin

pytestmark = pytest.mark.skipif(os.environ.get("CCQ_VERIFY_LOCAL_HOST") != "1",
                                reason="verifies a converged machine; run tests/platforms/converge_and_verify.sh")

REPO = Path(__file__).resolve().parents[3]
HOME = Path.home()
PORT = int(os.environ.get("CCQ_VERIFY_PROXY_PORT", "4000"))
PROXY = f"http://127.0.0.1:{PORT}"
UPSTREAM_LOG = Path(os.environ.get("CCQ_VERIFY_UPSTREAM_LOG", "/nonexistent"))
IS_MAC = platform.system() == "Darwin"
LABEL = "ccq-litellm"
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def pins() -> dict[str, str]:
    return yaml.safe_load((REPO / "roles" / "ccq" / "defaults" / "main.yml").read_text())


def master_key() -> str:
    return (HOME / ".secrets" / "ccq_litellm_master_key").read_text().strip()


def post(path: str, body: dict[str, Any], bearer: str | None = "master") -> tuple[int, str]:
    """POST to the proxy; the key is read from its file here, never passed on a command line."""
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
    if bearer == "master":
        headers["authorization"] = "Bearer " + master_key()
    elif bearer:
        headers["authorization"] = "Bearer " + bearer
    request = urllib.request.Request(PROXY + path, data=json.dumps(body).encode(), headers=headers, method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=120) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def healthy() -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(PROXY + "/health/liveliness", timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def upstream_requests() -> list[dict[str, Any]]:
    return [json.loads(line) for line in UPSTREAM_LOG.read_text().splitlines() if line.strip()]


@pytest.fixture
def upstream_mark() -> int:
    return len(upstream_requests())


def tool_use_turn(stream: bool) -> tuple[int, str]:
    return post("/v1/messages", {
        "model": pins()["ccq_model_alias"], "max_tokens": 256, "stream": stream,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [WEATHER_TOOL], "tool_choice": {"type": "auto"},
    })


def tool_use_from(raw: str, stream: bool) -> tuple[dict[str, Any], str | None]:
    if not stream:
        message = json.loads(raw)
        return next(b for b in message["content"] if b["type"] == "tool_use"), message["stop_reason"]
    streamed = assemble_stream(raw.encode())
    return streamed.tool_uses[0], streamed.stop_reason


def test_seed_check_system_array_gets_anthropic_json():
    status, raw = post("/v1/messages", {
        "model": pins()["ccq_model_alias"], "max_tokens": 16,
        "system": [{"type": "text", "text": "You are a helpful assistant."}],
        "messages": [{"role": "user", "content": "ping"}],
    })
    assert status == 200, raw
    message = json.loads(raw)
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"][0]["type"] == "text" and message["content"][0]["text"]


@pytest.mark.parametrize("stream", [False, True], ids=["non-streaming", "streaming"])
def test_tool_use_round_trip(stream: bool, upstream_mark: int):
    status, raw = tool_use_turn(stream)
    assert status == 200, raw
    tool_use, stop_reason = tool_use_from(raw, stream)
    assert stop_reason == "tool_use" and tool_use["name"] == "get_weather" and tool_use["input"].get("city")
    tool_use = {k: tool_use[k] for k in ("type", "id", "name", "input")}
    status, raw = post("/v1/messages", {
        "model": pins()["ccq_model_alias"], "max_tokens": 256, "stream": stream, "tools": [WEATHER_TOOL],
        "messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": [tool_use]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use["id"],
                                          "content": "18C and sunny"}]},
        ],
    })
    assert status == 200, raw
    reached = upstream_requests()[upstream_mark:]
    tool_messages = [m for r in reached for m in r["body"].get("messages", []) if m.get("role") == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == [tool_use["id"]]


def test_missing_or_wrong_bearer_is_refused_before_the_upstream(upstream_mark: int):
    body = {"model": pins()["ccq_model_alias"], "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    assert post("/v1/messages", body, bearer=None)[0] == 401
    assert post("/v1/messages", body, bearer="sk-wrong-key")[0] == 401
    assert upstream_requests()[upstream_mark:] == []


def test_ccq_runs_claude_code_from_the_users_shell(upstream_mark: int):
    """ccq from an interactive shell of the user (zsh on macOS), as a person would type it."""
    shell = "zsh" if IS_MAC else "bash"
    proc = subprocess.run([shell, "-ic", 'cd /tmp && ccq -p "Use a subagent to say pong"'],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert upstream_requests()[upstream_mark:], "nothing reached the upstream"


def test_pinned_versions_are_installed():
    env = {**os.environ, "PIPX_HOME": str(HOME / ".local/share/pipx"), "PIPX_BIN_DIR": str(HOME / ".local/bin")}
    show = subprocess.run([str(HOME / ".local/share/ccq/pipx-tool/bin/pipx"), "runpip", "litellm", "show",
                           "litellm", "openai"], env=env, capture_output=True, text=True, timeout=120)
    assert show.returncode == 0, show.stderr
    assert versions_off_pin(show.stdout, read_pins()) == []
    claude = subprocess.run([str(HOME / ".local/bin/claude"), "--version"], capture_output=True, text=True, timeout=60)
    assert claude.stdout.startswith(str(pins()["ccq_claude_code_version"]) + " ")


def listening_addresses() -> list[str]:
    if IS_MAC:
        out = subprocess.run(["lsof", "-nP", f"-iTCP:{PORT}", "-sTCP:LISTEN"], capture_output=True, text=True).stdout
        return re.findall(r"TCP (\S+) \(LISTEN\)", out)
    out = subprocess.run(["ss", "-H", "-ltn", f"sport = :{PORT}"], capture_output=True, text=True).stdout
    return [f for f in out.split() if f.endswith(f":{PORT}")]


def test_proxy_listens_on_loopback_only():
    assert set(listening_addresses()) == {f"127.0.0.1:{PORT}"}


def test_key_files_are_private():
    assert stat.S_IMODE((HOME / ".secrets").stat().st_mode) == 0o700
    for path in (HOME / ".secrets/cerebras_api_key", HOME / ".secrets/ccq_litellm_master_key",
                 HOME / ".config/ccq/litellm.env"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def launchd_job() -> tuple[str, int | None]:
    """The domain/label the agent is loaded under, and its pid (None while not running)."""
    uid = os.getuid()
    for domain in (f"gui/{uid}", f"user/{uid}"):
        out = subprocess.run(["launchctl", "print", f"{domain}/{LABEL}"], capture_output=True, text=True)
        if out.returncode == 0:
            pid = re.search(r"^\s*pid = (\d+)", out.stdout, re.M)
            return f"{domain}/{LABEL}", int(pid.group(1)) if pid else None
    raise AssertionError(f"{LABEL} is loaded in neither the gui nor the user domain")


@pytest.mark.skipif(not IS_MAC, reason="launchd agent: macOS only (Linux: molecule verifies the systemd unit)")
def test_launchd_agent_holds_no_secret_and_comes_back_after_kill():
    plist = HOME / "Library/LaunchAgents" / f"{LABEL}.plist"
    raw = plist.read_bytes()
    assert master_key().encode() not in raw
    assert (HOME / ".secrets/cerebras_api_key").read_text().strip().encode() not in raw
    _, pid_before = launchd_job()
    assert pid_before, "the agent is loaded but not running"
    os.kill(pid_before, signal.SIGKILL)
    # KeepAlive: launchd starts it again (after ThrottleInterval), and LiteLLM loads.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (launchd_job()[1] not in (None, pid_before) and healthy()):
        time.sleep(1)
    assert launchd_job()[1] not in (None, pid_before)
    assert healthy()


@pytest.mark.skipif(IS_MAC or not shutil.which("systemctl") or not Path("/run/systemd/system").is_dir(),
                    reason="systemd user service: only where systemd runs")
def test_systemd_user_service_is_enabled():
    out = subprocess.run(["systemctl", "--user", "is-enabled", "ccq-litellm.service"], capture_output=True, text=True)
    assert out.stdout.strip() == "enabled"
