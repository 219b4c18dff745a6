"""What a converged ccq target must do: the seed's checks, tool use, Claude Code subagents,
authentication, pins, and a proxy that stays on loopback and comes back after a crash."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from conftest import (FAKE_URL, HOME, MODEL_ALIAS, PROXY_PORT, USER,
                      as_user, assemble_stream, post, pins, upstream_requests)
from helpers.http import request
from helpers.installs import read_pins, versions_off_pin

LAUNCHER = f"{HOME}/.local/share/ccq/ccq-proxy"
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def _tool_use_turn(host: Any, stream: bool) -> dict[str, Any]:
    body = {
        "model": MODEL_ALIAS,
        "max_tokens": 256,
        "stream": stream,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "auto"},
    }
    return post(host, "/v1/messages", body)


def test_seed_check_system_array_gets_anthropic_json(host):
    reply = post(host, "/v1/messages", {
        "model": MODEL_ALIAS,
        "max_tokens": 16,
        "system": [{"type": "text", "text": "You are a helpful assistant."}],
        "messages": [{"role": "user", "content": "ping"}],
    })
    assert reply["status"] == 200, reply["body"]
    message = json.loads(reply["body"])
    assert message["type"] == "message"
    assert message["role"] == "assistant"
    assert message["content"][0]["type"] == "text"
    assert message["content"][0]["text"]


def _finish_round_trip(host, tool_use: dict[str, Any], upstream_mark: int, stream: bool) -> None:
    follow_up = {
        "model": MODEL_ALIAS,
        "max_tokens": 256,
        "stream": stream,
        "tools": [WEATHER_TOOL],
        "messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": [tool_use]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": tool_use["id"], "content": "18C and sunny"}]},
        ],
    }
    reply = post(host, "/v1/messages", follow_up)
    assert reply["status"] == 200, reply["body"]
    if stream:
        assert assemble_stream(reply["body"].encode()).text
    else:
        assert json.loads(reply["body"])["content"][0]["type"] == "text"
    reached = upstream_requests(host)[upstream_mark:]
    tool_messages = [m for r in reached for m in r["body"].get("messages", []) if m.get("role") == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == [tool_use["id"]]
    assert "18C and sunny" in json.dumps(tool_messages[0]["content"])


def test_tool_use_round_trip_non_streaming(host, upstream_mark):
    reply = _tool_use_turn(host, stream=False)
    assert reply["status"] == 200, reply["body"]
    message = json.loads(reply["body"])
    assert message["stop_reason"] == "tool_use"
    tool_use = next(b for b in message["content"] if b["type"] == "tool_use")
    assert tool_use["name"] == "get_weather"
    assert tool_use["input"].get("city")
    _finish_round_trip(host, {k: tool_use[k] for k in ("type", "id", "name", "input")}, upstream_mark, False)


def test_tool_use_round_trip_streaming(host, upstream_mark):
    reply = _tool_use_turn(host, stream=True)
    assert reply["status"] == 200, reply["body"]
    streamed = assemble_stream(reply["body"].encode())
    assert streamed.stop_reason == "tool_use"
    tool_use = streamed.tool_uses[0]
    assert tool_use["name"] == "get_weather"
    assert tool_use["input"].get("city")
    _finish_round_trip(host, {k: tool_use[k] for k in ("type", "id", "name", "input")}, upstream_mark, True)


def test_claude_code_agent_round_trip_through_ccq(host, upstream_mark):
    # ccq is a shell function: the timeout wraps the whole login shell.
    result = host.run("timeout 300 " + as_user(
        'cd /tmp && ccq -p "Use a subagent to say pong" --output-format stream-json --verbose',
        login_shell=True) + " 2>/tmp/ccq-stderr")
    stderr = host.file("/tmp/ccq-stderr").content_string
    assert result.rc == 0, result.stdout[-2000:] + stderr[-2000:]
    # ccq told Claude Code the model's window (Claude Code otherwise assumes 1M tokens and says so).
    assert "doesn't recognize the model" not in stderr, stderr[-2000:]
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    tool_uses = [b for e in events if e.get("type") == "assistant"
                 for b in e["message"]["content"] if b.get("type") == "tool_use"]
    assert any(b["name"] in ("Agent", "Task") for b in tool_uses)
    tool_results = [b for e in events if e.get("type") == "user"
                    for b in (e["message"]["content"] if isinstance(e["message"]["content"], list) else [])
                    if b.get("type") == "tool_result"]
    assert tool_results, "no tool_result came back to the main conversation"
    reached = upstream_requests(host)[upstream_mark:]
    # The main conversation carries the marker only inside the assistant's tool call; the
    # subagent's own conversation carries it as its user prompt.
    subagent_prompts = [m for r in reached for m in r["body"].get("messages", [])
                        if m.get("role") == "user" and "ccq-subagent-probe" in json.dumps(m.get("content"))]
    assert subagent_prompts, "the subagent's own conversation never reached the upstream"
    assert events[-1].get("type") == "result" and not events[-1].get("is_error")


def test_missing_or_wrong_bearer_is_refused_before_the_upstream(host, upstream_mark):
    body = {"model": MODEL_ALIAS, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    assert post(host, "/v1/messages", body, bearer="none")["status"] == 401
    assert post(host, "/v1/messages", body, bearer="wrong")["status"] == 401
    assert upstream_requests(host)[upstream_mark:] == []


def test_pinned_versions_are_installed(host):
    show = host.run(as_user(f"{HOME}/.local/share/ccq/pipx-tool/bin/pipx runpip litellm show litellm openai"))
    assert show.rc == 0, show.stderr
    assert versions_off_pin(show.stdout, read_pins()) == []
    claude = host.run(as_user(f"{HOME}/.local/bin/claude --version"))
    assert claude.stdout.startswith(pins()["ccq_claude_code_version"] + " ")


def test_proxy_listens_on_loopback_only(host):
    sockets = host.run(f"ss -H -ltn 'sport = :{PROXY_PORT}'").stdout.split()
    local_addresses = [field for field in sockets if field.endswith(f":{PROXY_PORT}")]
    assert local_addresses == [f"127.0.0.1:{PROXY_PORT}"]


def _systemctl_user(host, *args: str):
    return host.run(as_user("systemctl --user " + " ".join(args)))


def test_service_is_enabled_and_restarts_after_kill(host):
    assert _systemctl_user(host, "is-enabled", "ccq-litellm.service").stdout.strip() == "enabled"
    pid_before = _main_pid(host)
    assert pid_before not in ("", "0")
    host.run(f"kill -9 {pid_before}")
    # systemd starts a new process within 10 s (Restart=on-failure, RestartSec=1)...
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _main_pid(host) in ("", "0", pid_before):
        time.sleep(0.5)
    assert _main_pid(host) not in ("", "0", pid_before)
    # ...and that process serves again once LiteLLM has loaded (seconds, more on a busy host).
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if host.run(f"curl -fsS -o /dev/null http://127.0.0.1:{PROXY_PORT}/health/liveliness").rc == 0:
            break
        time.sleep(1)
    assert host.run(f"curl -fsS -o /dev/null http://127.0.0.1:{PROXY_PORT}/health/liveliness").rc == 0


def _main_pid(host) -> str:
    return _systemctl_user(host, "show", "-p", "MainPID", "--value", "ccq-litellm.service").stdout.strip()


def test_service_is_hardened_and_never_drops_params(host):
    shown = _systemctl_user(host, "show", "-p", "NoNewPrivileges", "-p", "PrivateTmp", "-p", "UMask",
                            "-p", "ProtectSystem", "-p", "ProtectHome", "-p", "Restart",
                            "-p", "ExecStart", "ccq-litellm.service").stdout
    props = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    assert props["NoNewPrivileges"] == "yes"
    assert props["PrivateTmp"] == "yes"
    assert props["UMask"] == "0077"
    assert props["ProtectSystem"] == "strict"
    assert props["ProtectHome"] == "read-only"
    assert props["Restart"] == "on-failure"
    # The unit runs ccq's launcher, the one place the proxy's command line is written.
    assert f"argv[]=/bin/sh {LAUNCHER} ;" in props["ExecStart"], props["ExecStart"]
    unit = host.file(f"{HOME}/.config/systemd/user/ccq-litellm.service").content_string
    launcher = host.file(LAUNCHER)
    assert launcher.user == USER and launcher.mode == 0o700
    for text in (unit, launcher.content_string):
        assert "sk-" not in text and "csk-" not in text
    # Its command line: loopback only, never --drop_params; and so is the running proxy's.
    code = [line for line in launcher.content_string.splitlines() if not line.lstrip().startswith("#")]
    [command] = [line for line in code if "/bin/litellm " in line]
    assert command.split()[0] == "exec" and " --host 127.0.0.1 --port 14000 " in command + " "
    assert "--drop_params" not in "\n".join(code)
    cmdline = host.run(f"tr '\\0' '\\n' < /proc/{_main_pid(host)}/cmdline").stdout.splitlines()
    assert cmdline[cmdline.index("--host") + 1] == "127.0.0.1"
    assert "--drop_params" not in cmdline


def test_the_running_proxy_is_inside_its_sandbox(host):
    """Enforced, not only written in the unit: the proxy's own view of the filesystem (its
    /proc/<pid>/root, readable by root with CAP_SYS_PTRACE) is read-only outside ccq's config
    and state dirs, and has a /tmp of its own."""
    pid = _main_pid(host)
    status = host.file(f"/proc/{pid}/status").content_string
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), status
    assert re.search(r"^Umask:\s+0077$", status, re.M), status
    seen_by_proxy = f"/proc/{pid}/root"
    probes = ["/etc/ccq-sandbox-probe", "/usr/local/ccq-sandbox-probe", f"{HOME}/ccq-sandbox-probe",
              f"{HOME}/.secrets/ccq-sandbox-probe", f"{HOME}/.local/share/pipx/ccq-sandbox-probe"]
    try:
        for probe in probes:
            attempt = host.run(f"touch {seen_by_proxy}{probe}")
            assert attempt.rc != 0 and "Read-only file system" in attempt.stderr, (probe, attempt.stderr)
    finally:
        host.run("rm -f " + " ".join(probes))
    for writable in (f"{HOME}/.config/ccq", f"{HOME}/.local/state/ccq"):
        attempt = host.run(f"touch {seen_by_proxy}{writable}/sandbox-probe && rm {seen_by_proxy}{writable}/sandbox-probe")
        assert attempt.rc == 0, (writable, attempt.stderr)
    host.run("touch /tmp/ccq-sandbox-probe")
    try:
        assert host.file("/tmp/ccq-sandbox-probe").exists
        assert not host.file(f"{seen_by_proxy}/tmp/ccq-sandbox-probe").exists
    finally:
        host.run("rm -f /tmp/ccq-sandbox-probe")


def test_an_upstream_429_reaches_claude_code_at_once_with_retry_after(host, upstream_mark):
    # The deployed config and callback: no retry inside the proxy (LiteLLM's router and the
    # openai SDK each retried twice), Anthropic's envelope, and a Retry-After derived from
    # Cerebras' reset header.
    for stream in (True, False):
        queued = request("POST", FAKE_URL + "/_fake/queue", {"responses": [
            {"kind": "error", "status": 429, "headers": {"x-ratelimit-reset-tokens-minute": "9.5"}}]},
            {"content-type": "application/json"})
        assert queued.status == 200, queued.body
        reply = _tool_use_turn(host, stream=stream)
        assert reply["status"] == 429, reply["body"]
        assert json.loads(reply["body"])["error"]["type"] == "rate_limit_error"
        assert reply["headers"].get("retry-after") == "10"
    assert [r["status"] for r in upstream_requests(host)[upstream_mark:]
            if r["path"] == "/v1/chat/completions"] == [429, 429]


def test_parallel_tool_calls_reach_the_client_as_separate_tool_use_blocks(host):
    calls = [{"id": f"call_{city}", "name": "get_weather", "arguments": {"city": city}}
             for city in ("Paris", "Oslo", "Lima")]
    for stream in (True, False):
        request("POST", FAKE_URL + "/_fake/queue", {"responses": [{"kind": "tool_calls", "calls": calls}]},
                {"content-type": "application/json"})
        reply = _tool_use_turn(host, stream=stream)
        assert reply["status"] == 200, reply["body"]
        blocks = (assemble_stream(reply["body"].encode()).blocks if stream
                  else json.loads(reply["body"])["content"])
        assert [(b["id"], b["input"]) for b in blocks if b["type"] == "tool_use"] == [
            (c["id"], c["arguments"]) for c in calls]
