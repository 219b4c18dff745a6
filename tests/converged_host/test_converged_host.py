"""What a converged ccq host must do: the blog recipe's curl check, tool use, Claude Code subagents,
authentication, pins, private key files, and a proxy that stays on loopback and comes back
after a crash under its service manager.

One suite for every converged host: Molecule's verifier runs it in the podman target
(molecule/default/molecule.yml), the macOS CI job on the runner itself with local://
(tests/platforms/converge_and_verify.sh). It talks to the account's own proxy and reads its
key files, so `make unit` leaves it out (pytest.ini).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from helpers.converged_host import as_user, converged_host, post, proxy_answers, upstream_requests
from helpers.http import assemble_stream, request
from helpers.installs import versions_off_pin
from scripts.locks import Pins

TARGET = converged_host()
UNIT = f"{TARGET.service_name}.service"
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def _tool_use_turn(host: Any, stream: bool) -> dict[str, Any]:
    body = {
        "model": TARGET.model_alias,
        "max_tokens": 256,
        "stream": stream,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "auto"},
    }
    return post(host, "/v1/messages", body)


def test_a_system_array_gets_anthropic_json(host):
    # The blog recipe's curl check (section 9-1, docs/provisioning.md).
    reply = post(host, "/v1/messages", {
        "model": TARGET.model_alias,
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


@pytest.mark.parametrize("stream", [False, True], ids=["non-streaming", "streaming"])
def test_tool_use_round_trip(host, upstream_mark, stream):
    reply = _tool_use_turn(host, stream=stream)
    assert reply["status"] == 200, reply["body"]
    if stream:
        streamed = assemble_stream(reply["body"].encode())
        stop_reason, tool_use = streamed.stop_reason, streamed.tool_uses[0]
    else:
        message = json.loads(reply["body"])
        stop_reason, tool_use = message["stop_reason"], next(b for b in message["content"] if b["type"] == "tool_use")
    assert stop_reason == "tool_use"
    assert tool_use["name"] == "get_weather"
    assert tool_use["input"].get("city")
    tool_use = {k: tool_use[k] for k in ("type", "id", "name", "input")}
    reply = post(host, "/v1/messages", {
        "model": TARGET.model_alias,
        "max_tokens": 256,
        "stream": stream,
        "tools": [WEATHER_TOOL],
        "messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": [tool_use]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": tool_use["id"], "content": "18C and sunny"}]},
        ],
    })
    assert reply["status"] == 200, reply["body"]
    if stream:
        assert assemble_stream(reply["body"].encode()).text
    else:
        assert json.loads(reply["body"])["content"][0]["type"] == "text"
    reached = upstream_requests(host)[upstream_mark:]
    tool_messages = [m for r in reached for m in r["body"].get("messages", []) if m.get("role") == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == [tool_use["id"]]
    assert "18C and sunny" in json.dumps(tool_messages[0]["content"])


def test_claude_code_agent_round_trip_through_ccq(host, upstream_mark):
    # ccq is a shell function: the timeout (where coreutils has one; macOS does not) wraps
    # the whole login shell.
    timeout = "timeout 300 " if host.exists("timeout") else ""
    result = host.run(timeout + as_user(
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
    body = {"model": TARGET.model_alias, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    assert post(host, "/v1/messages", body, bearer="none")["status"] == 401
    assert post(host, "/v1/messages", body, bearer="wrong")["status"] == 401
    assert upstream_requests(host)[upstream_mark:] == []


def test_pinned_versions_are_installed(host, pins: Pins):
    venv_python = f"{TARGET.path('litellm_venv')}/bin/python"
    show = host.run(as_user(f"{venv_python} -m pip --disable-pip-version-check show litellm openai"))
    assert show.rc == 0, show.stderr
    assert versions_off_pin(show.stdout, pins) == []
    claude = host.run(as_user(f"{TARGET.path('bin_dir')}/claude --version"))
    assert claude.stdout.startswith(pins.claude_code_version + " ")


def test_proxy_listens_on_loopback_only(host):
    port = TARGET.proxy_port
    if host.system_info.type == "darwin":
        listening = re.findall(r"TCP (\S+) \(LISTEN\)", host.run(f"lsof -nP -iTCP:{port} -sTCP:LISTEN").stdout)
    else:
        listening = [field for field in host.run(f"ss -H -ltn 'sport = :{port}'").stdout.split()
                     if field.endswith(f":{port}")]
    assert set(listening) == {f"127.0.0.1:{port}"}, listening


def test_key_files_and_directories_are_private(host):
    for name in ("api_key_file", "master_key_file", "proxy_env_file"):
        assert host.file(TARGET.path(name)).mode == 0o600, name
        assert host.file(TARGET.path(name)).user == TARGET.account, name
    for name in ("secrets_dir", "config_dir"):
        assert host.file(TARGET.path(name)).mode == 0o700, name


def _wait_until_serving(host, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not proxy_answers(host):
        time.sleep(1)
    return proxy_answers(host)


def _systemctl_user(host, *args: str):
    return host.run(as_user("systemctl --user " + " ".join(args)))


def _main_pid(host) -> str:
    return _systemctl_user(host, "show", "-p", "MainPID", "--value", UNIT).stdout.strip()


@pytest.mark.service_manager("systemd")
def test_service_is_enabled_and_restarts_after_kill(host):
    assert _systemctl_user(host, "is-enabled", UNIT).stdout.strip() == "enabled"
    pid_before = _main_pid(host)
    assert pid_before not in ("", "0")
    host.run(f"kill -9 {pid_before}")
    # systemd starts a new process within 10 s (Restart=on-failure, RestartSec=1)...
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _main_pid(host) in ("", "0", pid_before):
        time.sleep(0.5)
    assert _main_pid(host) not in ("", "0", pid_before)
    # ...and that process serves again once LiteLLM has loaded (seconds, more on a busy host).
    assert _wait_until_serving(host, 90)


@pytest.mark.service_manager("systemd")
def test_service_is_hardened_and_never_drops_params(host):
    shown = _systemctl_user(host, "show", "-p", "NoNewPrivileges", "-p", "PrivateTmp", "-p", "UMask",
                            "-p", "ProtectSystem", "-p", "ProtectHome", "-p", "Restart",
                            "-p", "ExecStart", UNIT).stdout
    props = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    assert props["NoNewPrivileges"] == "yes"
    assert props["PrivateTmp"] == "yes"
    assert props["UMask"] == "0077"
    assert props["ProtectSystem"] == "strict"
    assert props["ProtectHome"] == "read-only"
    assert props["Restart"] == "on-failure"
    # The unit runs ccq's launcher, the one place the proxy's command line is written.
    launcher_path = TARGET.path("proxy_launcher")
    assert f"argv[]=/bin/sh {launcher_path} ;" in props["ExecStart"], props["ExecStart"]
    unit = host.file(f"{TARGET.path('unit_dir')}/{UNIT}").content_string
    launcher = host.file(launcher_path)
    assert launcher.user == TARGET.account and launcher.mode == 0o700
    for text in (unit, launcher.content_string):
        assert "sk-" not in text and "csk-" not in text
    # Its command line: loopback only, never --drop_params; and so is the running proxy's.
    code = [line for line in launcher.content_string.splitlines() if not line.lstrip().startswith("#")]
    [command] = [line for line in code if "/bin/litellm " in line]
    assert command.split()[0] == "exec" and f" --host 127.0.0.1 --port {TARGET.proxy_port} " in command + " "
    assert "--drop_params" not in "\n".join(code)
    cmdline = host.run(f"tr '\\0' '\\n' < /proc/{_main_pid(host)}/cmdline").stdout.splitlines()
    assert cmdline[cmdline.index("--host") + 1] == "127.0.0.1"
    assert "--drop_params" not in cmdline


@pytest.mark.service_manager("systemd")
def test_the_running_proxy_is_inside_its_sandbox(host):
    """Enforced, not only written in the unit: the proxy's own view of the filesystem (its
    /proc/<pid>/root, readable by root with CAP_SYS_PTRACE) is read-only outside ccq's config
    and state dirs, and has a /tmp of its own."""
    if host.user().name != "root":
        pytest.skip("looks into the proxy's mount namespace: needs root on the host (Molecule's podman backend)")
    home = TARGET.home
    pid = _main_pid(host)
    status = host.file(f"/proc/{pid}/status").content_string
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), status
    assert re.search(r"^Umask:\s+0077$", status, re.M), status
    seen_by_proxy = f"/proc/{pid}/root"
    probes = ["/etc/ccq-sandbox-probe", "/usr/local/ccq-sandbox-probe", f"{home}/ccq-sandbox-probe",
              f"{TARGET.path('secrets_dir')}/ccq-sandbox-probe", f"{TARGET.path('pipx_home')}/ccq-sandbox-probe"]
    try:
        for probe in probes:
            attempt = host.run(f"touch {seen_by_proxy}{probe}")
            assert attempt.rc != 0 and "Read-only file system" in attempt.stderr, (probe, attempt.stderr)
    finally:
        host.run("rm -f " + " ".join(probes))
    for writable in (TARGET.path("config_dir"), TARGET.path("state_dir")):
        probe = f"{seen_by_proxy}{writable}/sandbox-probe"
        attempt = host.run(f"touch {probe} && rm {probe}")
        assert attempt.rc == 0, (writable, attempt.stderr)
    host.run("touch /tmp/ccq-sandbox-probe")
    try:
        assert host.file("/tmp/ccq-sandbox-probe").exists
        assert not host.file(f"{seen_by_proxy}/tmp/ccq-sandbox-probe").exists
    finally:
        host.run("rm -f /tmp/ccq-sandbox-probe")


def _launchd_job(host) -> tuple[str, int | None]:
    """The domain/label the agent is loaded under, and its pid (None while not running)."""
    uid = host.user().uid
    for domain in (f"gui/{uid}", f"user/{uid}"):
        shown = host.run(f"launchctl print {domain}/{TARGET.service_name}")
        if shown.rc == 0:
            pid = re.search(r"^\s*pid = (\d+)", shown.stdout, re.M)
            return f"{domain}/{TARGET.service_name}", int(pid.group(1)) if pid else None
    raise AssertionError(f"{TARGET.service_name} is loaded in neither the gui nor the user domain")


@pytest.mark.service_manager("launchd")
def test_launchd_agent_holds_no_secret_and_comes_back_after_kill(host):
    plist = host.file(f"{TARGET.home}/Library/LaunchAgents/{TARGET.service_name}.plist").content_string
    for key_file in ("master_key_file", "api_key_file"):
        assert host.file(TARGET.path(key_file)).content_string.strip() not in plist, key_file
    _, pid_before = _launchd_job(host)
    assert pid_before, "the agent is loaded but not running"
    host.run(f"kill -9 {pid_before}")
    # KeepAlive: launchd starts it again (after ThrottleInterval), and LiteLLM loads.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (_launchd_job(host)[1] not in (None, pid_before) and proxy_answers(host)):
        time.sleep(1)
    assert _launchd_job(host)[1] not in (None, pid_before)
    assert proxy_answers(host)


def test_an_upstream_429_reaches_claude_code_at_once_with_retry_after(host, upstream_mark):
    # The deployed config and callback: no retry inside the proxy (LiteLLM's router and the
    # openai SDK each retried twice), Anthropic's envelope, and a Retry-After derived from
    # Cerebras' reset header.
    for stream in (True, False):
        queued = request("POST", TARGET.fake_queue_url, {"responses": [
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
        request("POST", TARGET.fake_queue_url, {"responses": [{"kind": "tool_calls", "calls": calls}]},
                {"content-type": "application/json"})
        reply = _tool_use_turn(host, stream=stream)
        assert reply["status"] == 200, reply["body"]
        blocks = (assemble_stream(reply["body"].encode()).blocks if stream
                  else json.loads(reply["body"])["content"])
        assert [(b["id"], b["input"]) for b in blocks if b["type"] == "tool_use"] == [
            (c["id"], c["arguments"]) for c in calls]
