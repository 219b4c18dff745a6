"""ccq doctor's pieces in isolation: parsers, masking, version pins, and each check's verdict
on facts fixed in advance (systemd states this machine cannot produce, network failures).

The package is imported from the very folder roles/ccq_doctor builds its one deployed file from.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from helpers.doctor_settings import ccq_layout, doctor_settings
from helpers.modules import DOCTOR_PACKAGE, load_doctor
from helpers.stack import render_template as _render
from helpers.stack import served_model

REPO = Path(__file__).resolve().parents[2]
UNIT_TEMPLATE = REPO / "roles/litellm_service/templates/litellm.service.j2"
LAUNCHER_TEMPLATE = REPO / "roles/litellm_service/templates/ccq-proxy.sh.j2"
CONFIG_TEMPLATE = REPO / "roles/litellm_proxy/templates/litellm_config.yaml.j2"


doctor = load_doctor()

# Built at run time so no key-shaped string is committed (secret scanners flag them).
MASTER_KEY = "sk-ccq-" + "unit" * 10
# What the provisioning told doctor that ccq tells Claude Code (and what the healthy ccq sets).
LIMITS = {"CLAUDE_CODE_MAX_CONTEXT_TOKENS": "65536", "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "16384",
          "DISABLE_AUTOUPDATER": "1"}
API_KEY = "csk-" + "unit" * 8
# The proxy's unit / launchd label as the role writes it (litellm_service_name).
SERVICE = doctor_settings(Path("/"))["service_name"]


def settings(tmp_path: Path, **overrides: Any) -> Any:
    """doctor's settings as the role writes them for alice (ccq's values, tests/helpers/doctor_settings)."""
    values = dict(user="alice", model_alias="qwen-3-coder-480b",
                  model_preference=["qwen-3-coder-480b", "zai-glm-4.7", "gpt-oss-120b"],
                  service_manager="systemd", claude_code_environment=dict(LIMITS))
    values.update(overrides)
    return doctor.settings.settings_from(doctor_settings(tmp_path / "home", **values))


def capture(alias: str = "qwen-3-coder-480b", port: int = 4000, **env: str) -> Any:
    base = {"ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}", "ANTHROPIC_MODEL": alias,
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    base.update({name: alias for name in doctor.parsing.ROUTING_VARS + doctor.parsing.SMALL_FAST_VARS})
    base.update(LIMITS)
    for name, value in env.items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return doctor.facts.Capture(True, "bash (~/.bashrc)", env=base, argv=["--model", alias, "--version"],
                          token_fingerprint=doctor.parsing.fingerprint(MASTER_KEY))


def running(pid: int = 4242, argv: list[str] | None = None, age: float = 600.0, key: str = MASTER_KEY) -> Any:
    argv = argv or ["/venv/bin/python", "/venv/bin/litellm", "--config", "/c.yaml", "--host", "127.0.0.1",
                    "--port", "4000"]
    return doctor.machine.Process(pid, argv, time.time() - age, {"LITELLM_MASTER_KEY": doctor.parsing.fingerprint(key)})


def active_service(**overrides: Any) -> Any:
    argv = ["/venv/bin/litellm", "--config", "/c.yaml", "--host", "127.0.0.1", "--port", "4000", "--telemetry", "False"]
    values = dict(loaded=True, enabled="enabled", active="active", sub="running",
                  result="success", main_pid=4242, exec_start=argv, unit_file_exec_start=argv, linger=True)
    values.update(overrides)
    return doctor.service_managers.ServiceState(**values)


def facts(tmp_path: Path, settings_overrides: dict[str, Any] | None = None, **preset: Any) -> Any:
    """Facts for a healthy systemd setup; ``preset`` replaces individual facts."""
    s = settings(tmp_path, **(settings_overrides or {}))
    healthy = dict(
        service=active_service(), proxy_process=running(), health=doctor.machine.HttpResult(status=200, body=b'"ok"'),
        proxy_models=doctor.machine.HttpResult(status=200,
                                               body=json.dumps({"data": [{"id": "qwen-3-coder-480b"}]}).encode()),
        listeners=[doctor.parsing.Listener("127.0.0.1", s.port, 11)],
        proxy_listeners=[doctor.parsing.Listener("127.0.0.1", s.port, 11)],
        capture=capture(port=s.port), capture_direct=capture(port=s.port), master_key=MASTER_KEY, api_key=API_KEY,
        env_file={"LITELLM_MASTER_KEY": MASTER_KEY, "CEREBRAS_API_KEY": API_KEY},
        proxy_config=doctor.facts.ProxyConfig(models={"qwen-3-coder-480b": {"model": "cerebras/qwen-3-coder-480b",
                                                                      "api_base": s.api_base}},
                                        callbacks=[doctor.parsing.CALLBACK_SETTING]),
        versions={"litellm": s.litellm_version, "openai": "1.99.9"}, callback_import=None,
        callback_classes={doctor.parsing.CALLBACK_SETTING: "CcqAnthropicNormalizer"},
        readiness=doctor.machine.HttpResult(status=200, body=json.dumps(
            {"litellm_version": s.litellm_version, "success_callbacks": ["CcqAnthropicNormalizer"]}).encode()),
        upstream=doctor.facts.Upstream(f"{s.api_base}/models", doctor.machine.HttpResult(status=200),
                                 ["qwen-3-coder-480b", "gpt-oss-120b"]),
        claude_version=s.claude_code_version, node_version="v18.19.0", journal=[], log_tail=[], service_environment={},
    )
    healthy.update(preset)
    return doctor.facts.Facts(s, environ={"HOME": str(s.home), "PATH": "/usr/bin:/bin"}).preset(**healthy)


def verdict(check_id: str, f: Any) -> Any:
    check = next(c for c in doctor.checks.CHECKS if c.id == check_id)
    return check.run(f)


# --- masking ------------------------------------------------------------------------------

def test_doctor_reads_only_paths_the_role_writes():
    """Every path doctor reads comes from doctor.json, whose paths are ccq_layout's; only
    doctor.json's own location is written in the script, and it is ccq_layout's too."""
    layout = ccq_layout()
    sources = "".join(path.read_text() for path in sorted(DOCTOR_PACKAGE.glob("*.py")))
    read = set(re.findall(r"paths\[[\"']([a-z_]+)[\"']\]", sources))
    assert read and read <= set(doctor.settings.PATHS_READ), sorted(read - set(doctor.settings.PATHS_READ))
    assert set(doctor.settings.PATHS_READ) <= set(layout), sorted(set(doctor.settings.PATHS_READ) - set(layout))
    assert doctor.settings.DEFAULT_SETTINGS_FILE == layout["doctor_config"]


def test_known_secrets_are_masked_wherever_they_appear():
    line = f"key={MASTER_KEY} and {API_KEY}!"
    masked = doctor.parsing.mask_secrets(line, [MASTER_KEY, API_KEY])
    assert MASTER_KEY not in masked and API_KEY not in masked
    assert masked.count("***") >= 2


@pytest.mark.parametrize("line, secret", [
    ("Authorization: Bearer abcdefghijkl123", "abcdefghijkl123"),
    ("LITELLM_MASTER_KEY=sk-" + "1234567890" * 2, "1234567890" * 2),
    # Built at run time so no key-shaped string is committed (secret scanners flag them).
    ("using csk-" + "z" * 20 + " now", "z" * 20),
    ("HTTPS_PROXY=http://bob:hunter2pass@proxy.corp:3128", "hunter2pass"),
    ('{"api_key": "plainsecretvalue"}', "plainsecretvalue"),
])
def test_unknown_keys_are_masked_by_their_shape(line, secret):
    assert secret not in doctor.parsing.mask_secrets(line)


def test_masking_leaves_ordinary_log_lines_alone():
    line = 'INFO:     127.0.0.1:40608 - "GET /health/liveliness HTTP/1.1" 200 OK (task-runner, disk-usage)'
    assert doctor.parsing.mask_secrets(line) == line


# --- versions, NO_PROXY --------------------------------------------------------------------

@pytest.mark.parametrize("version, ok", [("1.99.1", True), ("1.99.9", True), ("1.100.0", False),
                                         ("1.99.0", False), ("2.0.0", False)])
def test_openai_pin_is_enforced(version, ok):
    assert doctor.parsing.version_satisfies(version, ">=1.99.1,<1.100.0") is ok


def test_exact_pin_tells_post_releases_apart():
    assert doctor.parsing.version_satisfies("1.74.0.post2", "==1.74.0.post2")
    assert not doctor.parsing.version_satisfies("1.74.0", "==1.74.0.post2")


@pytest.mark.parametrize("env, captured", [
    ({"HTTPS_PROXY": "http://proxy:3128"}, ["HTTPS_PROXY"]),
    ({"https_proxy": "http://proxy:3128", "NO_PROXY": "localhost"}, ["https_proxy"]),
    ({"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "example.com,127.0.0.1"}, []),
    ({"ALL_PROXY": "socks5://proxy:1080", "no_proxy": "127.0.0.0/8"}, []),
    ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "*"}, []),
    ({"NO_PROXY": ""}, []),
])
def test_loopback_is_captured_only_when_no_proxy_lacks_127_0_0_1(env, captured):
    assert doctor.parsing.loopback_captured_by(env) == captured


# --- parsers ---------------------------------------------------------------------------------

PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:36B0 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0
   1: 00000000:0FA0 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 222 1 0
   2: 0100007F:36B0 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 333 1 0
"""
PROC_NET_TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0FA0 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 444 1 0
   1: 00000000000000000000000000000000:0FA1 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 555 1 0
"""  # noqa: E501 - /proc/net/tcp6's lines, verbatim


def test_listening_sockets_are_read_from_proc_net():
    v4 = doctor.parsing.parse_proc_net_tcp(PROC_NET_TCP)
    v6 = doctor.parsing.parse_proc_net_tcp(PROC_NET_TCP6)
    assert [(s.address, s.port, s.inode, s.is_loopback) for s in v4] == [
        ("127.0.0.1", 14000, 111, True), ("0.0.0.0", 4000, 222, False)]
    assert [(s.address, s.port, s.is_loopback) for s in v6] == [("::1", 4000, True), ("::", 4001, False)]


def test_systemctl_exec_start_gives_the_argv():
    shown = ("ExecStart={ path=/h/.local/share/pipx/venvs/litellm/bin/litellm ; argv[]=/h/.local/share/pipx/venvs/"
             "litellm/bin/litellm --config /h/c.yaml --host 127.0.0.1 --port 14000 ; ignore_errors=no ; "
             "start_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }\nMainPID=12\n")
    values = doctor.parsing.parse_systemctl_show(shown)
    argv = doctor.parsing.exec_start_argv(values["ExecStart"])
    assert values["MainPID"] == "12"
    assert doctor.parsing.option_value(argv, "--port") == "14000"
    assert doctor.parsing.option_value(argv, "--host") == "127.0.0.1"


LAYOUT_PATHS = {name: f"/h/{rel}" for name, rel in ccq_layout().items()}
# The litellm command line of the launcher rendered below (litellm_service_litellm_argv).
LAUNCHER_ARGV = ["/v/bin/litellm", "--config", LAYOUT_PATHS["proxy_config"], "--host", "127.0.0.1", "--port", "4000",
                 "--telemetry", "False"]


def render_launcher(**overrides: Any) -> str:
    variables = dict(litellm_service_port=4000, litellm_service_litellm_argv=LAUNCHER_ARGV,
                     litellm_service_paths=LAYOUT_PATHS, litellm_service_launcher=LAYOUT_PATHS["proxy_launcher"],
                     litellm_service_name=SERVICE, litellm_service_manager="systemd",
                     litellm_service_health_url="http://127.0.0.1:4000/health/liveliness")
    variables.update(overrides)
    return _render(LAUNCHER_TEMPLATE, **variables)


def test_the_deployed_unit_file_runs_the_launcher():
    text = _render(UNIT_TEMPLATE, litellm_service_port=4000, litellm_service_launcher=LAYOUT_PATHS["proxy_launcher"],
                   litellm_service_paths=LAYOUT_PATHS,
                   litellm_service_private_users=True, litellm_service_sandbox_properties=["ProtectSystem=strict"])
    argv = doctor.parsing.unit_exec_start(text)
    assert argv == ["/bin/sh", "/h/.local/share/ccq/ccq-proxy"]
    assert not doctor.parsing.runs_litellm(argv)
    # The keys reach LiteLLM through the launcher only.
    assert "EnvironmentFile" not in text


def test_the_launcher_runs_the_command_line_doctor_json_names(tmp_path):
    """The launcher and doctor.json's launcher_argv are written from one list; doctor finds it in
    the launcher's code (comments left out), and notices when the launcher no longer runs it."""
    f = facts(tmp_path, {"launcher_argv": LAUNCHER_ARGV}, launcher=None)
    del f.launcher  # read for real, from the rendered file
    launcher = f.settings.paths["proxy_launcher"]
    launcher.parent.mkdir(parents=True)
    launcher.write_text(render_launcher())
    assert f.launcher_as_provisioned()
    # The comment that says "Never --drop_params" is not code.
    assert "--drop_params" not in f.launcher
    launcher.write_text(render_launcher().replace(" --host 127.0.0.1", ""))
    del f.launcher
    assert not f.launcher_as_provisioned()


def test_a_launcher_command_line_split_over_lines_is_joined(tmp_path):
    f = facts(tmp_path, {"launcher_argv": ["/v/bin/litellm", "--config", "/c.yaml", "--port", "1"]})
    launcher = f.settings.paths["proxy_launcher"]
    launcher.parent.mkdir(parents=True)
    launcher.write_text("set -eu\n# litellm --drop_params\nexec /v/bin/litellm --config /c.yaml \\\n  --port 1\n")
    assert f.launcher_as_provisioned() and "--drop_params" not in f.launcher


def test_what_doctor_json_says_of_config_yaml_agrees_with_yaml_on_the_role_template(tmp_path):
    """When LiteLLM's venv cannot read config.yaml, doctor takes what the role wrote into it
    from doctor.json: the same aliases, models, endpoint and callback."""
    yaml = pytest.importorskip("yaml")
    models = [served_model("my-alias", "gpt-oss-120b", reasoning_effort="low"),
              served_model("my-alias-background", "zai-glm-4.7", role="background")]
    text = _render(CONFIG_TEMPLATE, litellm_proxy_models=models, litellm_proxy_api_base="https://api.cerebras.ai/v1",
                   litellm_proxy_debug=False)
    by_yaml = doctor.proxy_facts.proxy_config_from_data(yaml.safe_load(text))
    s = settings(tmp_path, model_alias="my-alias", upstream_model="gpt-oss-120b", api_base="https://api.cerebras.ai/v1",
                 background_model_alias="my-alias-background", background_model="zai-glm-4.7")
    provisioned = doctor.facts.ProxyConfig.provisioned(s)
    assert {alias: {k: v for k, v in params.items() if k != "api_key"} for alias, params in by_yaml.models.items()} \
        == provisioned.models
    assert by_yaml.callbacks == provisioned.callbacks == [doctor.parsing.CALLBACK_SETTING]
    assert provisioned.upstream_model("my-alias-background") == "zai-glm-4.7"


def test_config_yaml_is_read_with_litellms_yaml_else_taken_from_doctor_json(tmp_path):
    f = facts(tmp_path, proxy_config=None)
    del f.proxy_config
    assert f.proxy_config is None  # no config.yaml
    config = f.settings.paths["proxy_config"]
    config.parent.mkdir(parents=True)
    config.write_text("model_list:\n  - model_name: a\n    litellm_params:\n      model: cerebras/b\n"
                      "litellm_settings:\n  x: 1\n")
    del f.proxy_config
    # No LiteLLM venv to parse it: what the role wrote, from doctor.json.
    assert f.proxy_config == doctor.facts.ProxyConfig.provisioned(f.settings)
    python = f.settings.paths["litellm_venv"] / "bin/python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    del f.proxy_config
    # The removed callbacks line is noticed.
    assert f.proxy_config == doctor.facts.ProxyConfig(models={"a": {"model": "cerebras/b"}}, callbacks=[])


def test_error_lines_end_with_the_traceback_cause():
    journal = ["INFO: started", "Traceback (most recent call last):", '  File "x.py", line 1',
               "ImportError: cannot import name 'ResponseTextConfig' from 'openai.types.responses'",
               "ccq-litellm.service: Main process exited, code=exited, status=1/FAILURE"]
    lines = doctor.parsing.last_error_lines(journal, count=3)
    assert any("ResponseTextConfig" in line for line in lines)
    assert "INFO: started" not in lines


def test_shell_comments_do_not_count_as_code():
    text = "# Never --drop_params.\nexec litellm --port 1  # not --drop_params either\n"
    assert "--drop_params" not in doctor.parsing.shell_code(text)
    assert "--drop_params" in doctor.parsing.shell_code("exec litellm --drop_params\n")


@pytest.mark.parametrize("seconds, text", [(5, "5s"), (65, "1m 5s"), (3725, "1h 2m"), (90000, "1d 1h")])
def test_durations_read_like_uptime(seconds, text):
    assert doctor.parsing.format_duration(seconds) == text


def test_network_failures_are_told_apart():
    classify = doctor.machine.classify_network_error
    assert classify(urllib.error.URLError(socket.gaierror(-2, "Name or service not known")))[0] == "dns"
    assert classify(urllib.error.URLError(ssl.SSLCertVerificationError(1, "x")))[0] == "tls"
    assert classify(urllib.error.URLError(ConnectionRefusedError()))[0] == "refused"
    assert classify(urllib.error.URLError(TimeoutError()))[0] == "timeout"


# --- the registry ------------------------------------------------------------------------------

def test_every_row_of_issue_5_has_a_check():
    ids = {check.id for check in doctor.checks.CHECKS}
    blog_recipe_rows = {"auth", "service", "port", "proxy-env", "versions", "drop-params", "callback", "routing",
                 "small-fast", "alias"}
    new_rows = {"model", "claude-code", "loopback", "file-modes", "upstream"}
    assert blog_recipe_rows | new_rows <= ids
    assert len(ids) == len(doctor.checks.CHECKS)


def test_a_healthy_setup_passes_every_check(tmp_path):
    results = doctor.checks.run_checks(facts(tmp_path))
    assert [(c.id, f.status, f.message) for c, f in results if f.status != doctor.findings.OK] == []


def test_a_crashing_check_is_reported_as_a_failure_not_a_traceback(tmp_path):
    def broken(_facts):
        raise KeyError("boom")
    check = doctor.findings.Check("broken", "s", "l", "f", broken)
    [(_, finding)] = doctor.checks.run_checks(facts(tmp_path), [check])
    assert finding.status == doctor.findings.FAIL and "KeyError" in finding.message


def test_a_fact_that_raises_fails_the_checks_that_use_it_and_no_other(tmp_path, monkeypatch):
    f = facts(tmp_path)
    del f.versions  # gathered for real, from a venv that cannot be read

    def unreadable(*_args: Any) -> None:
        raise PermissionError("site-packages is not readable")
    monkeypatch.setattr(doctor.software_facts, "venv_versions", unreadable)
    results = {check.id: finding for check, finding in doctor.checks.run_checks(f)}
    assert results["versions"].status == doctor.findings.FAIL
    assert "the check itself failed: PermissionError: site-packages is not readable" in results["versions"].message
    assert [check_id for check_id, finding in results.items() if finding.status != doctor.findings.OK] == ["versions"]


def test_only_facts_can_be_preset(tmp_path):
    with pytest.raises(TypeError, match="'journl' is not a fact"):
        facts(tmp_path, journl=[])


@pytest.mark.parametrize("name, manager", [("systemd", "Systemd"), ("launchd", "Launchd"), ("none", "OnDemand")])
def test_the_service_manager_is_the_one_the_settings_name(tmp_path, name, manager):
    built = doctor.facts.Facts(settings(tmp_path, service_manager=name))
    assert type(built.manager) is getattr(doctor.service_managers, manager)


@pytest.mark.parametrize("name", ["", "upstart"])
def test_a_service_manager_doctor_does_not_know_is_a_settings_error(tmp_path, name):
    # doctor.json names the manager litellm_service decided; doctor never guesses one.
    with pytest.raises(doctor.settings.SettingsError, match="service_manager"):
        settings(tmp_path, service_manager=name)


def test_output_is_one_status_line_per_check_and_masked(tmp_path):
    f = facts(tmp_path, proxy_models=doctor.machine.HttpResult(status=401))
    results = doctor.checks.run_checks(f)
    results.append((results[0][0],
                    doctor.findings.Finding(doctor.findings.FAIL, f"leaked {MASTER_KEY}", f"use {API_KEY}")))
    lines = doctor.checks.format_findings(results, [MASTER_KEY, API_KEY])
    status_lines = [line for line in lines if line.split(" ", 1)[0] in ("ok", "warn", "FAIL")]
    assert len(status_lines) == len(results)
    assert not any(MASTER_KEY in line or API_KEY in line for line in lines)
    assert lines[-1].startswith("2 failed")


# --- each check's verdict --------------------------------------------------------------------

def test_stopped_service_names_the_start_command(tmp_path):
    f = facts(tmp_path, service=active_service(active="inactive", sub="dead", main_pid=0), proxy_process=None)
    finding = verdict("service", f)
    assert finding.status == doctor.findings.FAIL
    assert finding.fix == f"systemctl --user start {SERVICE}.service"


def test_crash_loop_shows_the_last_error_lines(tmp_path):
    journal = ["Traceback (most recent call last):",
               "ImportError: cannot import name 'ResponseTextConfig' from 'openai.types.responses'"]
    f = facts(tmp_path, service=active_service(active="activating", sub="auto-restart", n_restarts=4, main_pid=0),
              proxy_process=None, journal=journal)
    finding = verdict("service", f)
    assert finding.status == doctor.findings.FAIL and "crash-looping" in finding.message
    assert any("ResponseTextConfig" in line for line in finding.details)


def test_restarts_that_never_reach_a_healthy_proxy_are_a_crash_loop(tmp_path):
    down = doctor.machine.HttpResult(error_kind="refused", error="connection refused")
    f = facts(tmp_path, service=active_service(n_restarts=3), health=down,
              journal=["ImportError: cannot import name 'ResponseTextConfig'"])
    finding = verdict("service", f)
    assert finding.status == doctor.findings.FAIL and "crash-looping" in finding.message


def test_one_restart_after_a_crash_that_recovered_is_fine(tmp_path):
    assert verdict("service", facts(tmp_path, service=active_service(n_restarts=1))).status == doctor.findings.OK


def test_a_service_that_is_not_enabled_fails(tmp_path):
    finding = verdict("service", facts(tmp_path, service=active_service(enabled="disabled")))
    assert finding.status == doctor.findings.FAIL and finding.fix == f"systemctl --user enable {SERVICE}.service"


def test_missing_linger_is_a_warning(tmp_path):
    finding = verdict("service", facts(tmp_path, service=active_service(linger=False)))
    assert finding.status == doctor.findings.WARN and "enable-linger alice" in finding.fix


def test_proxy_on_another_port_is_named(tmp_path):
    argv = ["/venv/bin/litellm", "--config", "/c.yaml", "--host", "127.0.0.1", "--port", "4001"]
    f = facts(tmp_path, health=doctor.machine.HttpResult(error_kind="refused", error="connection refused"),
              service=active_service(exec_start=argv, unit_file_exec_start=argv),
              proxy_listeners=[doctor.parsing.Listener("127.0.0.1", 4001, 12)],
              listeners=[doctor.parsing.Listener("127.0.0.1", 4001, 12)])
    finding = verdict("port", f)
    assert finding.status == doctor.findings.FAIL
    assert "127.0.0.1:4001" in finding.message and "ccq uses 4000" in finding.message


def test_proxy_beyond_loopback_fails(tmp_path):
    f = facts(tmp_path, proxy_listeners=[doctor.parsing.Listener("0.0.0.0", 4000, 11)],
              listeners=[doctor.parsing.Listener("0.0.0.0", 4000, 11)])
    finding = verdict("loopback", f)
    assert finding.status == doctor.findings.FAIL and "0.0.0.0:4000" in finding.message


def test_unit_without_host_option_fails_even_when_stopped(tmp_path):
    argv = ["/venv/bin/litellm", "--config", "/c.yaml", "--port", "4000"]
    f = facts(tmp_path, service=active_service(exec_start=argv, unit_file_exec_start=argv), proxy_listeners=[])
    assert verdict("loopback", f).status == doctor.findings.FAIL


@pytest.mark.parametrize("manager", ["systemd", "launchd", "none"])
def test_a_launcher_without_the_host_option_fails_even_when_stopped(tmp_path, manager):
    launcher = doctor.parsing.shell_code(render_launcher().replace(" --host 127.0.0.1", ""))
    f = facts(tmp_path, {"service_manager": manager}, service=active_service(), proxy_listeners=[], launcher=launcher)
    finding = verdict("loopback", f)
    assert finding.status == doctor.findings.FAIL and str(f.settings.paths["proxy_launcher"]) in finding.message
    assert "--host 127.0.0.1" in finding.message


def test_the_launcher_as_deployed_is_loopback_only(tmp_path):
    f = facts(tmp_path, launcher=doctor.parsing.shell_code(render_launcher()))
    assert verdict("loopback", f).status == doctor.findings.OK
    assert verdict("drop-params", f).status == doctor.findings.OK


def test_rotated_key_without_restart_is_a_401_with_the_restart_fix(tmp_path):
    f = facts(tmp_path, proxy_models=doctor.machine.HttpResult(status=401),
              proxy_process=running(key="sk-old-" + "0" * 12))
    finding = verdict("auth", f)
    assert finding.status == doctor.findings.FAIL and "older master key" in finding.message
    assert finding.fix == f"systemctl --user restart {SERVICE}.service"


def test_the_blog_recipes_ccq_with_its_own_token_is_named(tmp_path):
    # The ccq() of the Japanese blog recipe ccq started from sends sk-local as its token.
    blog_recipe = capture()
    blog_recipe.token_fingerprint = doctor.parsing.fingerprint("sk-local")
    finding = verdict("auth", facts(tmp_path, capture=blog_recipe))
    assert finding.status == doctor.findings.FAIL and "not the master key" in finding.message


@pytest.mark.parametrize("openai", ["1.100.0", "1.98.0", None])
def test_openai_outside_the_pin_fails_with_the_rebuild_from_the_lock(tmp_path, openai):
    versions = {"litellm": "1.74.0.post2"} | ({"openai": openai} if openai else {})
    finding = verdict("versions", facts(tmp_path, versions=versions))
    assert finding.status == doctor.findings.FAIL
    assert "outside >=1.99.1,<1.100.0" in finding.message
    # A pip install by hand would leave the lock; provisioning rebuilds the venv from it.
    assert "re-run the provisioning" in finding.fix and "lock" in finding.fix
    assert "pip install" not in finding.fix


def test_another_litellm_version_fails(tmp_path):
    finding = verdict("versions", facts(tmp_path, versions={"litellm": "1.75.0", "openai": "1.99.9"}))
    assert finding.status == doctor.findings.FAIL and "litellm 1.75.0" in finding.message


def test_drop_params_in_the_running_proxy_fails(tmp_path):
    process = running(argv=["python", "/venv/bin/litellm", "--config", "/c.yaml", "--drop_params"])
    finding = verdict("drop-params", facts(tmp_path, proxy_process=process))
    assert finding.status == doctor.findings.FAIL and "running proxy" in finding.message


def test_drop_params_in_the_launcher_fails_and_names_it(tmp_path):
    f = facts(tmp_path)
    launcher = f.settings.paths["proxy_launcher"]
    launcher.parent.mkdir(parents=True)
    launcher.write_text(render_launcher().replace("--telemetry False", "--telemetry False --drop_params"))
    finding = verdict("drop-params", f)
    assert finding.status == doctor.findings.FAIL and str(launcher) in finding.message
    assert "running proxy" not in finding.message


def test_missing_callback_setting_fails(tmp_path):
    config = doctor.facts.ProxyConfig(models={"qwen-3-coder-480b": {"model": "cerebras/qwen-3-coder-480b"}})
    assert verdict("callback", facts(tmp_path, proxy_config=config)).status == doctor.findings.FAIL


def test_a_running_proxy_that_loaded_the_callback_is_trusted_without_importing_it(tmp_path):
    finding = verdict("callback", facts(tmp_path, callback_import="never asked"))
    assert finding.status == doctor.findings.OK and "loaded CcqAnthropicNormalizer" in finding.message


def test_callback_that_does_not_import_fails_with_its_error_when_the_proxy_is_down(tmp_path):
    error = "ImportError: cannot import name 'ResponseTextConfig' from 'openai.types.responses'"
    down = doctor.machine.HttpResult(error_kind="refused", error="connection refused")
    finding = verdict("callback", facts(tmp_path, callback_import=error, health=down, readiness=down))
    assert finding.status == doctor.findings.FAIL and "ResponseTextConfig" in finding.message


def test_a_running_proxy_without_the_callback_needs_a_restart(tmp_path):
    readiness = doctor.machine.HttpResult(status=200, body=b'{"success_callbacks": ["ServiceLogging"]}')
    finding = verdict("callback", facts(tmp_path, readiness=readiness))
    assert finding.status == doctor.findings.FAIL and "did not load CcqAnthropicNormalizer" in finding.message
    assert finding.fix == f"systemctl --user restart {SERVICE}.service"


def test_the_callback_class_is_read_from_the_deployed_file(tmp_path):
    f = facts(tmp_path)
    del f.callback_classes
    callbacks = f.settings.paths["proxy_callbacks"]
    callbacks.parent.mkdir(parents=True)
    callbacks.write_text((REPO / "roles/litellm_proxy/files/custom_callbacks.py").read_text())
    assert f.callback_classes == {doctor.parsing.CALLBACK_SETTING: "CcqAnthropicNormalizer"}


@pytest.mark.parametrize("check_id, missing", [("routing", "CLAUDE_CODE_SUBAGENT_MODEL"),
                                               ("routing", "ANTHROPIC_DEFAULT_SONNET_MODEL"),
                                               ("small-fast", "ANTHROPIC_SMALL_FAST_MODEL"),
                                               ("small-fast", "ANTHROPIC_DEFAULT_HAIKU_MODEL")])
def test_a_missing_model_variable_is_named(tmp_path, check_id, missing):
    finding = verdict(check_id, facts(tmp_path, capture=capture(**{missing: None})))
    assert finding.status == doctor.findings.FAIL and f"{missing} is unset" in finding.message


def test_a_model_variable_pointing_elsewhere_is_named(tmp_path):
    finding = verdict("small-fast", facts(tmp_path, capture=capture(ANTHROPIC_SMALL_FAST_MODEL="claude-3-5-haiku")))
    assert finding.status == doctor.findings.FAIL and "ANTHROPIC_SMALL_FAST_MODEL=claude-3-5-haiku" in finding.message


def test_alias_missing_from_config_is_model_not_found(tmp_path):
    finding = verdict("alias", facts(tmp_path, capture=capture(alias="old-alias"),
                                     capture_direct=capture(alias="old-alias")))
    assert finding.status == doctor.findings.FAIL
    assert "'old-alias'" in finding.message and "model_not_found" in finding.message


def test_model_that_cerebras_stopped_serving_lists_what_it_serves(tmp_path):
    upstream = doctor.facts.Upstream("https://api.cerebras.ai/v1/models", doctor.machine.HttpResult(status=200),
                               ["gpt-oss-120b", "zai-glm-4.7"])
    finding = verdict("model", facts(tmp_path, upstream=upstream))
    assert finding.status == doctor.findings.FAIL
    assert "gpt-oss-120b, zai-glm-4.7" in finding.message
    assert "it picks zai-glm-4.7" in finding.fix


@pytest.mark.parametrize("result, words", [
    (doctor.machine.HttpResult(error_kind="dns", error="name resolution failed"), "cannot resolve api.cerebras.ai"),
    (doctor.machine.HttpResult(error_kind="tls", error="TLS certificate not trusted"), "TLS-intercepting"),
    (doctor.machine.HttpResult(status=401), "rejects the API key"),
    (doctor.machine.HttpResult(status=503), "HTTP 503"),
])
def test_upstream_failures_say_which_layer(tmp_path, result, words):
    upstream = doctor.facts.Upstream("https://api.cerebras.ai/v1/models", result, [])
    finding = verdict("upstream", facts(tmp_path, upstream=upstream))
    assert finding.status == doctor.findings.FAIL and words in finding.message
    assert verdict("model", facts(tmp_path, upstream=upstream)).status == doctor.findings.WARN


def test_a_shell_proxy_the_service_does_not_see_is_named(tmp_path):
    upstream = doctor.facts.Upstream("https://api.cerebras.ai/v1/models",
                               doctor.machine.HttpResult(error_kind="timeout", error="timed out"), [])
    f = facts(tmp_path, upstream=upstream)
    f.environ["HTTPS_PROXY"] = "http://proxy.corp:3128"
    finding = verdict("upstream", f)
    assert "does not see it" in finding.message and "set-environment HTTPS_PROXY" in finding.fix


def test_an_on_demand_proxy_uses_the_proxy_of_the_shell_that_starts_it(tmp_path):
    f = facts(tmp_path, {"service_manager": "none"})
    del f.service_environment
    f.environ["HTTPS_PROXY"] = "http://proxy.corp:3128"
    assert f.service_proxies() == {"https": "http://proxy.corp:3128"}


def test_claude_code_off_the_pin_warns_and_old_node_fails(tmp_path):
    assert verdict("claude-code", facts(tmp_path, claude_version="2.1.400")).status == doctor.findings.WARN
    assert verdict("claude-code", facts(tmp_path, node_version="v16.20.0")).status == doctor.findings.FAIL
    assert verdict("claude-code", facts(tmp_path, claude_version=None)).status == doctor.findings.FAIL


def test_loose_modes_are_listed_with_their_chmod(tmp_path):
    f = facts(tmp_path)
    paths = f.settings.paths
    paths["secrets_dir"].mkdir(parents=True)
    paths["api_key_file"].write_text(API_KEY)
    paths["secrets_dir"].chmod(0o755)
    paths["api_key_file"].chmod(0o644)
    finding = verdict("file-modes", f)
    assert finding.status == doctor.findings.FAIL
    assert f"chmod 700 {paths['secrets_dir']}" in finding.fix
    assert f"chmod 600 {paths['api_key_file']}" in finding.fix


def test_proxy_variable_under_ccq_without_no_proxy_fails(tmp_path):
    env = capture(HTTPS_PROXY="http://proxy.corp:3128", NO_PROXY=None, no_proxy=None)
    finding = verdict("proxy-env", facts(tmp_path, capture=env))
    assert finding.status == doctor.findings.FAIL and "HTTPS_PROXY" in finding.message


def test_proxy_variable_only_in_the_shell_warns_because_ccq_exempts_loopback(tmp_path):
    f = facts(tmp_path, capture=capture(HTTPS_PROXY="http://proxy.corp:3128"))
    f.environ["HTTPS_PROXY"] = "http://proxy.corp:3128"
    assert verdict("proxy-env", f).status == doctor.findings.WARN


def test_a_file_changed_after_the_proxy_started_asks_for_a_restart(tmp_path):
    f = facts(tmp_path, proxy_process=running(age=3600))
    config = f.settings.paths["proxy_config"]
    config.parent.mkdir(parents=True)
    config.write_text("changed")
    finding = verdict("restart", f)
    assert finding.status == doctor.findings.WARN and config.name in finding.message


LAUNCHCTL_PRINT = """gui/501/ccq-litellm = {
\tactive count = 1
\tpath = /Users/alice/Library/LaunchAgents/ccq-litellm.plist
\ttype = LaunchAgent
\tstate = running
\tprogram = /bin/sh
\tpid = 4242
\tlast exit code = 0
\tenvironment = {
\t\tstate = nested-not-top-level
\t}
}
"""


def test_launchctl_print_gives_state_pid_and_exit_code():
    values = doctor.parsing.parse_launchctl_print(LAUNCHCTL_PRINT)
    assert (values["state"], values["pid"], values["last exit code"]) == ("running", "4242", "0")


LAUNCHD = {"service_manager": "launchd"}


def test_a_running_launch_agent_is_ok_without_proc(tmp_path):
    service = doctor.service_managers.ServiceState(loaded=True, enabled="gui/501", active="running", main_pid=4242)
    finding = verdict("service", facts(tmp_path, LAUNCHD, service=service, proxy_process=None))
    assert finding.status == doctor.findings.OK and "pid 4242" in finding.message


def test_a_stopped_launch_agent_names_kickstart(tmp_path):
    service = doctor.service_managers.ServiceState(loaded=True, enabled="gui/501", active="not running", result="1")
    finding = verdict("service", facts(tmp_path, LAUNCHD, service=service, proxy_process=None, log_tail=[
        "ImportError: cannot import name 'ResponseTextConfig'"]))
    assert finding.status == doctor.findings.FAIL and finding.fix == f"launchctl kickstart -k gui/501/{SERVICE}"
    assert any("ResponseTextConfig" in line for line in finding.details)


def test_an_unloaded_launch_agent_names_bootstrap(tmp_path):
    finding = verdict("service", facts(tmp_path, LAUNCHD, service=doctor.service_managers.ServiceState(),
                                       proxy_process=None))
    assert finding.status == doctor.findings.FAIL and finding.fix.startswith("launchctl bootstrap gui/$(id -u) ")


def run_command(monkeypatch: Any, command: str, f: Any, **args: Any) -> tuple[int, list[str]]:
    """`ccq status` / `ccq logs` on the facts ``f``: their exit status and lines."""
    monkeypatch.setattr(doctor.cli, "Facts", lambda _settings: f)
    lines: list[str] = []
    return getattr(doctor.cli, command)(f.settings, argparse.Namespace(**args), lines.append), lines


@pytest.mark.parametrize("manager, how, logs", [
    ("systemd", f"systemd {SERVICE}.service", f"journalctl --user -u {SERVICE}.service"),
    ("launchd", f"launchd {SERVICE}", "{home}/" + ccq_layout()["launchd_log"]),
    ("none", "on demand, no systemd", "{home}/" + ccq_layout()["proxy_log"]),
])
def test_status_says_how_the_proxy_is_kept_up_and_where_it_logs(tmp_path, monkeypatch, manager, how, logs):
    f = facts(tmp_path, {"service_manager": manager})
    rc, lines = run_command(monkeypatch, "cmd_status", f)
    assert rc == 0 and lines[0].startswith(f"proxy     up ({how}, pid 4242, up ")
    assert f"logs      {logs.format(home=f.settings.home)} (ccq logs)" in lines


def test_logs_of_a_launch_agent_are_its_log_file_masked(tmp_path, monkeypatch):
    f = facts(tmp_path, LAUNCHD)
    log = f.settings.paths["launchd_log"]
    log.parent.mkdir(parents=True)
    log.write_text(f"older\nstarted\nkey {MASTER_KEY}\n")
    assert run_command(monkeypatch, "cmd_logs", f, lines=2, follow=False) == (0, ["started", "key ***"])


def test_logs_fall_back_to_the_log_file_when_the_journal_cannot_be_read(tmp_path, monkeypatch):
    f = facts(tmp_path)
    log = f.settings.paths["proxy_log"]
    log.parent.mkdir(parents=True)
    log.write_text("started\n")
    refused = subprocess.CompletedProcess(["journalctl"], 1, "", "No journal files were found.")
    monkeypatch.setattr(doctor.service_managers, "run", lambda argv, **_kwargs: refused)
    rc, lines = run_command(monkeypatch, "cmd_logs", f, lines=5, follow=False)
    assert (rc, lines) == (0, [f"(the journal cannot be read: No journal files were found.; showing {log})", "started"])



ON_DEMAND = {"service_manager": "none"}
SERVED = ["INFO:     Uvicorn running on http://127.0.0.1:4000 (Press CTRL+C to quit)"]
REFUSED_KEY = ["Traceback (most recent call last):",
               'PermissionError: Authentication Error: missing or wrong proxy key (ccq reads it from ~/.secrets)']
BROKEN_START = ["Traceback (most recent call last):",
                "ImportError: cannot import name 'ResponseTextConfig' from 'openai.types.responses'"]


def _start(*lines: str) -> list[str]:
    return [doctor.parsing.ON_DEMAND_START_MARKER + "2026-11-25T20:00:00Z", *lines]


@pytest.mark.parametrize("log, status", [
    # A proxy that started, served (and logged a refused key), then was stopped: ccq restarts it.
    (_start(*SERVED, *REFUSED_KEY), doctor.findings.WARN),
    # Its last start died before serving, after an earlier good run.
    (_start(*SERVED, *REFUSED_KEY) + _start(*BROKEN_START), doctor.findings.FAIL),
    # The last start was good; an earlier one had failed.
    (_start(*BROKEN_START) + _start(*SERVED), doctor.findings.WARN),
    # A log from before ccq wrote markers: judged as a whole.
    ([*BROKEN_START], doctor.findings.FAIL),
    ([], doctor.findings.WARN),
])
def test_a_stopped_on_demand_proxy_fails_only_when_its_last_start_failed(tmp_path, log, status):
    finding = verdict("service", facts(tmp_path, ON_DEMAND, service=doctor.service_managers.ServiceState(),
                                       proxy_process=None, log_tail=log))
    assert finding.status == status, finding
    if status == doctor.findings.FAIL:
        assert any("ResponseTextConfig" in line for line in finding.details)


def test_window_fails_when_ccq_does_not_tell_claude_code_the_models_window(tmp_path):
    finding = verdict("window", facts(tmp_path, capture=capture(CLAUDE_CODE_MAX_CONTEXT_TOKENS=None)))
    assert finding.status == doctor.findings.FAIL
    assert "CLAUDE_CODE_MAX_CONTEXT_TOKENS is unset" in finding.message and "1M tokens" in finding.message
    assert "open a new shell" in finding.fix


def test_window_fails_on_a_window_other_than_the_tables(tmp_path):
    finding = verdict("window", facts(tmp_path, capture=capture(CLAUDE_CODE_MAX_CONTEXT_TOKENS="1000000")))
    assert finding.status == doctor.findings.FAIL and "CLAUDE_CODE_MAX_CONTEXT_TOKENS=1000000" in finding.message


def test_window_warns_when_the_provisioning_said_nothing_about_it(tmp_path):
    finding = verdict("window", facts(tmp_path, settings_overrides={"claude_code_environment": {}}))
    assert finding.status == doctor.findings.WARN


def test_window_is_ok_when_ccq_tells_the_tables_limits(tmp_path):
    finding = verdict("window", facts(tmp_path))
    assert finding.status == doctor.findings.OK and "65536-token window" in finding.message


# --- a background model (ccq_background_model), retired models, quota --------------------------

BACKGROUND = "qwen-3-coder-480b-background"
# ccq's table of retired models as site.yml hands it over: zai-glm-4.6's replacement was retired in turn.
RETIRED = {"zai-glm-4.6": {"retired": "2026-01-20", "replacement": "zai-glm-4.7"},
           "zai-glm-4.7": {"retired": "2026-10", "replacement": "gpt-oss-120b"},
           "qwen-3-coder-480b": {"retired": "2025-11", "replacement": "gpt-oss-120b"}}


def proxy_config(main: str = "qwen-3-coder-480b", background: str | None = "gpt-oss-120b") -> Any:
    """config.yaml with the main alias, and the background alias unless ``background`` is None."""
    models = {"qwen-3-coder-480b": {"model": f"cerebras/{main}", "api_base": "https://api.cerebras.ai/v1"}}
    if background is not None:
        models[BACKGROUND] = {"model": f"cerebras/{background}", "api_base": "https://api.cerebras.ai/v1"}
    return doctor.facts.ProxyConfig(models=models, callbacks=[doctor.parsing.CALLBACK_SETTING])


def proxy_serves(*aliases: str) -> Any:
    return doctor.machine.HttpResult(status=200, body=json.dumps({"data": [{"id": a} for a in aliases]}).encode())


def upstream_serving(*models: str) -> Any:
    return doctor.facts.Upstream("https://api.cerebras.ai/v1/models", doctor.machine.HttpResult(status=200),
                                 list(models))


def background_facts(tmp_path: Path, settings_overrides: dict[str, Any] | None = None, **preset: Any) -> Any:
    """A healthy setup with a background model: gpt-oss-120b behind its own alias."""
    healthy = {"capture": capture(**{n: BACKGROUND for n in doctor.parsing.SMALL_FAST_VARS}),
               "capture_direct": capture(**{n: BACKGROUND for n in doctor.parsing.SMALL_FAST_VARS}),
               "proxy_config": proxy_config(), "proxy_models": proxy_serves("qwen-3-coder-480b", BACKGROUND)}
    healthy.update(preset)
    overrides = {"background_model_alias": BACKGROUND, "background_model": "gpt-oss-120b", "retired_models": RETIRED,
                 **(settings_overrides or {})}
    return facts(tmp_path, overrides, **healthy)


def test_a_healthy_setup_with_a_background_model_passes_every_check(tmp_path):
    results = doctor.checks.run_checks(background_facts(tmp_path))
    assert [(c.id, f.status, f.message) for c, f in results if f.status != doctor.findings.OK] == []
    found = {c.id: f.message for c, f in results}
    assert f"to the background alias {BACKGROUND}" in found["small-fast"]
    assert f"'{BACKGROUND}'" in found["alias"]
    assert "the background model gpt-oss-120b" in found["model"]


def test_small_fast_without_a_background_model_is_the_alias(tmp_path):
    finding = verdict("small-fast", facts(tmp_path))
    assert finding.status == doctor.findings.OK and finding.message.endswith("to the alias qwen-3-coder-480b")


def test_small_fast_without_a_background_model_fails_on_a_background_alias(tmp_path):
    f = facts(tmp_path, capture=capture(**{n: BACKGROUND for n in doctor.parsing.SMALL_FAST_VARS}))
    finding = verdict("small-fast", f)
    assert finding.status == doctor.findings.FAIL
    assert f"ANTHROPIC_SMALL_FAST_MODEL={BACKGROUND}" in finding.message
    assert "instead of the alias qwen-3-coder-480b" in finding.message


def test_small_fast_with_a_background_model_fails_on_the_main_alias(tmp_path):
    f = background_facts(tmp_path, capture=capture())
    finding = verdict("small-fast", f)
    assert finding.status == doctor.findings.FAIL
    assert ("ANTHROPIC_SMALL_FAST_MODEL=qwen-3-coder-480b, ANTHROPIC_DEFAULT_HAIKU_MODEL=qwen-3-coder-480b"
            in finding.message)
    assert f"instead of the background alias {BACKGROUND}" in finding.message
    assert "spend its model's quota" in finding.message and "open a new shell" in finding.fix


def test_small_fast_with_a_background_model_names_an_unset_variable(tmp_path):
    env = {doctor.parsing.SMALL_FAST_VARS[0]: BACKGROUND, doctor.parsing.SMALL_FAST_VARS[1]: None}
    finding = verdict("small-fast", background_facts(tmp_path, capture=capture(**env)))
    assert finding.status == doctor.findings.FAIL
    assert f"{doctor.parsing.SMALL_FAST_VARS[1]} is unset" in finding.message and "fail at once" in finding.message


def test_routing_stays_on_the_main_alias_with_a_background_model(tmp_path):
    assert verdict("routing", background_facts(tmp_path)).status == doctor.findings.OK
    f = background_facts(tmp_path, capture=capture(**{n: BACKGROUND for n in doctor.parsing.ROUTING_VARS
                                                      + doctor.parsing.SMALL_FAST_VARS}))
    assert verdict("routing", f).status == doctor.findings.FAIL


def test_alias_names_a_background_alias_missing_from_config(tmp_path):
    finding = verdict("alias", background_facts(tmp_path, proxy_config=proxy_config(background=None)))
    assert finding.status == doctor.findings.FAIL and "model_not_found" in finding.message
    assert f"'{BACKGROUND}' (background calls)" in finding.message
    assert "ccq asks for model 'qwen-3-coder-480b'" not in finding.message
    assert "background alias" in finding.fix


def test_alias_names_both_aliases_when_both_are_missing(tmp_path):
    f = background_facts(tmp_path, proxy_config=doctor.facts.ProxyConfig(models={"other": {"model": "cerebras/x"}}))
    finding = verdict("alias", f)
    assert finding.status == doctor.findings.FAIL
    assert f"'qwen-3-coder-480b' and '{BACKGROUND}' (background calls)" in finding.message


def test_alias_names_a_background_alias_the_running_proxy_does_not_serve(tmp_path):
    finding = verdict("alias", background_facts(tmp_path, proxy_models=proxy_serves("qwen-3-coder-480b")))
    assert finding.status == doctor.findings.FAIL and f"'{BACKGROUND}' (background calls) is in" in finding.message
    assert "predates the config" in finding.message
    assert finding.fix == f"systemctl --user restart {SERVICE}.service"


def test_alias_without_a_background_model_ignores_background_aliases(tmp_path):
    finding = verdict("alias", facts(tmp_path, proxy_config=proxy_config(background=None)))
    assert finding.status == doctor.findings.OK and "background" not in finding.message


@pytest.mark.parametrize("model, served, replacement", [
    ("zai-glm-4.6", ["gpt-oss-120b"], "gpt-oss-120b"),  # through zai-glm-4.7, retired too
    ("zai-glm-4.6", ["zai-glm-4.7", "gpt-oss-120b"], "zai-glm-4.7"),  # the first served one of the chain
    ("zai-glm-4.6", [], "gpt-oss-120b"),  # none served: the chain's end
    ("qwen-3-coder-480b", ["gpt-oss-120b"], "gpt-oss-120b"),
    ("gpt-oss-120b", ["gpt-oss-120b"], ""),  # not retired
])
def test_a_retired_models_replacement_follows_the_chain(model, served, replacement):
    assert doctor.parsing.replacement_for(model, RETIRED, served) == replacement


def test_a_replacement_chain_that_loops_or_ends_retired_names_none():
    looping = {"a": {"retired": "1", "replacement": "b"}, "b": {"retired": "2", "replacement": "a"}}
    assert doctor.parsing.replacement_for("a", looping, []) == ""
    assert doctor.parsing.replacement_for("a", {"a": {"retired": "1"}}, []) == ""


def test_a_retired_main_model_names_its_replacement_through_the_chain(tmp_path):
    f = facts(tmp_path, {"retired_models": RETIRED}, proxy_config=proxy_config("zai-glm-4.6", background=None),
              upstream=upstream_serving("gpt-oss-120b", "llama-4-scout"))
    finding = verdict("model", f)
    assert finding.status == doctor.findings.FAIL
    assert finding.message.startswith("Cerebras retired zai-glm-4.6 in 2026-01-20; its replacement is gpt-oss-120b;")
    assert "it serves: gpt-oss-120b, llama-4-scout" in finding.message
    assert "it picks gpt-oss-120b" in finding.fix and "ccq_cerebras_model is empty" in finding.fix


def test_a_retired_main_model_without_a_served_preference_is_pinned_to_its_replacement(tmp_path):
    f = facts(tmp_path, {"retired_models": RETIRED, "model_preference": ["qwen-3-coder-480b"]},
              proxy_config=proxy_config("zai-glm-4.6", background=None), upstream=upstream_serving("gpt-oss-120b"))
    finding = verdict("model", f)
    assert finding.status == doctor.findings.FAIL and "-e ccq_cerebras_model=gpt-oss-120b" in finding.fix


def test_a_retired_background_model_names_its_replacement_and_how_to_switch(tmp_path):
    f = background_facts(tmp_path, proxy_config=proxy_config(background="zai-glm-4.6"),
                         upstream=upstream_serving("qwen-3-coder-480b", "gpt-oss-120b"))
    finding = verdict("model", f)
    assert finding.status == doctor.findings.FAIL
    assert ("Cerebras retired the background model zai-glm-4.6 in 2026-01-20; its replacement is gpt-oss-120b"
            in finding.message)
    assert "ccq_background_model=gpt-oss-120b" in finding.fix
    assert "ccq_cerebras_model" not in finding.fix  # the main model is served: nothing to change there


def test_a_background_model_the_upstream_stopped_serving_fails_even_when_not_retired(tmp_path):
    f = background_facts(tmp_path, proxy_config=proxy_config(background="llama-9"),
                         upstream=upstream_serving("qwen-3-coder-480b", "gpt-oss-120b"))
    finding = verdict("model", f)
    assert finding.status == doctor.findings.FAIL and "does not serve the background model llama-9" in finding.message
    assert "ccq_background_model=<a served model>" in finding.fix


def test_both_models_retired_are_both_named(tmp_path):
    f = background_facts(tmp_path, proxy_config=proxy_config("qwen-3-coder-480b", background="zai-glm-4.6"),
                         upstream=upstream_serving("gpt-oss-120b"))
    finding = verdict("model", f)
    assert "Cerebras retired qwen-3-coder-480b in 2025-11" in finding.message
    assert "Cerebras retired the background model zai-glm-4.6" in finding.message
    assert "it picks gpt-oss-120b" in finding.fix and "ccq_background_model=gpt-oss-120b" in finding.fix


def test_the_background_model_comes_from_the_settings_without_a_config(tmp_path):
    f = background_facts(tmp_path, {"background_model": "zai-glm-4.6"}, proxy_config=None,
                         upstream=upstream_serving("qwen-3-coder-480b"))
    assert "background model zai-glm-4.6" in verdict("model", f).message


# `ccq status`'s quota lines, from the file the proxy writes after each answer (ccq_quota.py).
NOW = 1_800_000_000.0


def quota_file(tmp_path: Path, **models: dict[str, Any]) -> Path:
    path = tmp_path / "quota.json"
    path.write_text(json.dumps({"models": models}))
    return path


def figures(**overrides: Any) -> dict[str, Any]:
    """A model's figures 12 s after an answer, with 48 s of its minute still to go."""
    values = {"tokens_limit": 150000, "tokens_remaining": 45000, "tokens_reset_at": NOW + 48,
              "requests_day_limit": 14400, "requests_day_remaining": 14000, "requests_day_reset_at": NOW + 3600,
              "seen_at": NOW - 12}
    values.update(overrides)
    return values


def test_quota_says_what_is_left_this_minute_and_today(tmp_path):
    lines = doctor.quota.quota_lines(quota_file(tmp_path, **{"gpt-oss-120b": figures()}), now=NOW)
    assert lines == [("gpt-oss-120b: 45,000 of 150,000 tokens left this minute (12 s ago), "
                      "14,000 of 14,400 requests left today")]


def test_quota_after_the_minute_turned_says_it_is_full_again(tmp_path):
    stale = figures(tokens_remaining=12, tokens_reset_at=NOW - 1, seen_at=NOW - 130)
    [line] = doctor.quota.quota_lines(quota_file(tmp_path, **{"gpt-oss-120b": stale}), now=NOW)
    assert "12 of" not in line
    assert line.startswith("gpt-oss-120b: the minute's quota of 150,000 tokens is full again (2 min ago)")
    assert line.endswith("14,000 of 14,400 requests left today")


def test_quota_without_a_reset_time_is_stale_after_its_minute(tmp_path):
    old = figures(tokens_reset_at=None, requests_day_reset_at=None, seen_at=NOW - 90)
    [line] = doctor.quota.quota_lines(quota_file(tmp_path, **{"gpt-oss-120b": old}), now=NOW)
    assert "the minute's quota of 150,000 tokens is full again" in line
    assert "14,000 of 14,400 requests left today" in line


def test_quota_lists_the_models_in_use_first(tmp_path):
    path = quota_file(tmp_path, **{"a-model": figures(), "gpt-oss-120b": figures(), "zai-glm-4.7": figures()})
    lines = doctor.quota.quota_lines(path, ["zai-glm-4.7", "gpt-oss-120b"], now=NOW)
    assert [line.split(":", 1)[0] for line in lines] == ["zai-glm-4.7", "gpt-oss-120b", "a-model"]


def test_quota_before_any_answer_says_so(tmp_path):
    assert doctor.quota.quota_lines(tmp_path / "quota.json", now=NOW) == ["no answer from Cerebras recorded yet"]


@pytest.mark.parametrize("content", ["{not json", '["models"]', '{"models": {"gpt-oss-120b": 5}}',
                                     '{"models": {"gpt-oss-120b": {"tokens_remaining": "lots"}}}',
                                     '{"models": {"gpt-oss-120b": {"tokens_remaining": 1, "tokens_limit": Infinity}}}'])
def test_a_garbled_quota_file_is_one_line_not_a_traceback(tmp_path, content):
    path = tmp_path / "quota.json"
    path.write_text(content)
    [line] = doctor.quota.quota_lines(path, now=NOW)
    assert line.startswith(f"{path} is garbled")


def test_an_unreadable_quota_file_is_one_line(tmp_path):
    path = tmp_path / "quota.json"
    path.mkdir()
    [line] = doctor.quota.quota_lines(path, now=NOW)
    assert line.startswith(f"cannot read {path}")


# --- settings ------------------------------------------------------------------------------------

def write_settings(tmp_path: Path, /, **overrides: Any) -> Path:
    """doctor.json at its place in the home ``tmp_path``, as the role writes it, ``overrides`` applied."""
    path = tmp_path / ccq_layout()["doctor_config"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doctor_settings(tmp_path, **overrides)))
    return path


def test_settings_read_the_background_model_and_the_retired_models(tmp_path):
    path = write_settings(tmp_path, model_alias="a", background_model_alias="a-background",
                          background_model="gpt-oss-120b", retired_models=RETIRED)
    loaded = doctor.settings.load_settings(path, {"HOME": str(tmp_path)})
    assert (loaded.background_model_alias, loaded.background_model) == ("a-background", "gpt-oss-120b")
    assert loaded.retired_models["zai-glm-4.6"] == {"retired": "2026-01-20", "replacement": "zai-glm-4.7"}
    assert loaded.paths["quota_state"] == tmp_path / ccq_layout()["quota_state"]


def test_an_older_settings_file_without_the_optional_fields_still_loads(tmp_path):
    """Empty means none for these: no background model, no retired models, nothing told Claude Code."""
    path = write_settings(tmp_path, background_model_alias=None, background_model=None, retired_models=None,
                          claude_code_environment=None, upstream_model=None, claude_code_version=None)
    loaded = doctor.settings.load_settings(path, {"HOME": str(tmp_path)})
    assert (loaded.background_model_alias, loaded.background_model, loaded.retired_models) == ("", "", {})
    assert (loaded.claude_code_environment, loaded.upstream_model, loaded.claude_code_version) == ({}, "", "")


def run_main(monkeypatch: Any, capsys: Any, home: Path, *argv: str) -> tuple[int, list[str]]:
    """ccq_doctor.py as the ccq shell function runs it (no --config), for the account whose home is ``home``."""
    monkeypatch.setenv("HOME", str(home))
    rc = doctor.cli.main(list(argv))
    out, err = capsys.readouterr()
    assert err == ""
    return rc, out.splitlines()


@pytest.mark.parametrize("command, exit_status", [("doctor", 1), ("status", 4), ("logs", 1)])
def test_without_doctor_json_each_command_says_so_in_one_line(tmp_path, monkeypatch, capsys, command, exit_status):
    rc, lines = run_main(monkeypatch, capsys, tmp_path, command)
    assert (rc, lines) == (exit_status, [
        f"FAIL  settings  {tmp_path / ccq_layout()['doctor_config']} is missing: "
        f"re-run the provisioning ({doctor.settings.REPROVISION_HINT}), which writes it"])


@pytest.mark.parametrize("lacking", doctor.settings.required_settings())
def test_a_doctor_json_lacking_a_field_names_it(tmp_path, monkeypatch, capsys, lacking):
    # The command the file names is the fix; without it, the hint.
    path = write_settings(tmp_path, **{"reprovision": "make again", lacking: None})
    rc, lines = run_main(monkeypatch, capsys, tmp_path, "doctor")
    fix = doctor.settings.REPROVISION_HINT if lacking == "reprovision" else "make again"
    assert (rc, lines) == (1, [f"FAIL  settings  {path} lacks {lacking}: "
                               f"re-run the provisioning ({fix}), which writes it"])


@pytest.mark.parametrize("path_name", ["quota_state", "launchd_log"])
def test_a_doctor_json_lacking_a_path_names_it(tmp_path, monkeypatch, capsys, path_name):
    paths = {name: str(tmp_path / rel) for name, rel in ccq_layout().items() if name != path_name}
    write_settings(tmp_path, paths=paths)
    rc, lines = run_main(monkeypatch, capsys, tmp_path, "status")
    assert rc == 4 and len(lines) == 1 and f" lacks paths.{path_name}: " in lines[0]


@pytest.mark.parametrize("content, problem", [
    ('{"port": ', "is not valid JSON ("),
    ("[]", "is not a JSON object"),
])
def test_a_garbled_doctor_json_is_one_line(tmp_path, monkeypatch, capsys, content, problem):
    path = write_settings(tmp_path)
    path.write_text(content)
    rc, lines = run_main(monkeypatch, capsys, tmp_path, "doctor")
    assert rc == 1 and len(lines) == 1 and lines[0].startswith(f"FAIL  settings  {path} {problem}")


def test_a_port_that_is_not_a_number_is_named(tmp_path, monkeypatch, capsys):
    path = write_settings(tmp_path, port="four thousand")
    rc, lines = run_main(monkeypatch, capsys, tmp_path, "doctor")
    assert (rc, len(lines)) == (1, 1) and lines[0].startswith(f"FAIL  settings  {path} has a port that is not a number")
