"""`ccq doctor` on the converged target: each failure of issue 5 is injected, doctor must name
it with FAIL and exit non-zero, then the failure is repaired (with doctor's own fix where that
is a command) and doctor must be clean again.

Every test leaves the target as it found it: files are restored byte for byte with their
mode, owner and mtime (cp -p from a backup beside them, so no key passes through a command
line), units are reloaded and the proxy is healthy again before the next test runs.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import HOME, MASTER_KEY_FILE, MODEL_ALIAS, PROXY_PORT, SENTINEL_KEY, as_user, run_playbook

LAUNCHER = f"{HOME}/.local/share/ccq/ccq-proxy"
CONFIG = f"{HOME}/.config/ccq/litellm_config.yaml"
ENV_FILE = f"{HOME}/.config/ccq/litellm.env"
FUNCTIONS = f"{HOME}/.config/ccq/ccq.sh"
API_KEY_FILE = f"{HOME}/.secrets/cerebras_api_key"
SECRETS_DIR = f"{HOME}/.secrets"
VENV = f"{HOME}/.local/share/pipx/venvs/litellm"
FAKE_UNIT = "/etc/systemd/system/fake-cerebras.service"
FAKE_DROP_IN = "/etc/systemd/system/fake-cerebras.service.d/doctor-test.conf"
STATUS_LINE = re.compile(r"^(ok|warn|FAIL)\s+(\S+)\s")
# pip inside the target trusts the host's CA through the system store the roles filled.
PIP_ENV = "PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1"


class Doctor:
    """One `ccq doctor` run as the user would type it in a new terminal."""

    def __init__(self, host: Any, prelude: str = "") -> None:
        result = host.run(as_user(f"{prelude}cd ~ && ccq doctor", login_shell=True))
        self.rc = result.rc
        self.output = result.stdout
        self.statuses = {m.group(2): m.group(1) for m in map(STATUS_LINE.match, result.stdout.splitlines()) if m}
        secrets = [SENTINEL_KEY, host.file(MASTER_KEY_FILE).content_string.strip(),
                   host.file(API_KEY_FILE).content_string.strip()]
        assert not any(s and s in result.stdout + result.stderr for s in secrets), "doctor printed a key"

    @property
    def failures(self) -> set[str]:
        return {check for check, status in self.statuses.items() if status == "FAIL"}

    def fix(self, check: str) -> str:
        """The fix doctor printed under a failed check."""
        block = self.output.split(f"FAIL  {check}", 1)[1]
        return re.search(r"^\s+fix: (.+)$", block, re.M).group(1)

    def assert_names(self, *checks: str) -> None:
        assert self.rc != 0, self.output
        assert set(checks) <= self.failures, self.output
        for check in checks:
            assert self.fix(check), self.output

    def assert_clean(self) -> None:
        assert self.rc == 0 and not self.failures, self.output
        assert len(self.statuses) == 18, self.output


def user(host: Any, command: str) -> Any:
    result = host.run(as_user(command))
    assert result.rc == 0, f"{command}: {result.stdout}{result.stderr}"
    return result


def healthy(host: Any, port: int = PROXY_PORT) -> bool:
    return host.run(f"curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:{port}/health/liveliness").rc == 0


def wait_healthy(host: Any, port: int = PROXY_PORT, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(host, port):
            return
        time.sleep(1)
    raise AssertionError(f"the proxy did not answer on {port} within {timeout}s")


def restart_proxy(host: Any, reload: bool = False) -> None:
    user(host, ("systemctl --user daemon-reload && " if reload else "")
         + "systemctl --user reset-failed ccq-litellm.service; systemctl --user restart ccq-litellm.service")
    wait_healthy(host)


@contextlib.contextmanager
def preserved(host: Any, *paths: str) -> Iterator[None]:
    """Files put back exactly (bytes, mode, owner, mtime) however the test ends."""
    for path in paths:
        assert host.run(f"cp -p {path} {path}.doctor-test").rc == 0
    try:
        yield
    finally:
        for path in paths:
            host.run(f"cp -p {path}.doctor-test {path} && rm -f {path}.doctor-test")


def test_doctor_is_clean_on_the_converged_target(host):
    doctor = Doctor(host)
    doctor.assert_clean()
    assert doctor.statuses["service"] == "ok" and "ccq-litellm.service is enabled and running" in doctor.output


def test_status_and_logs_show_the_proxy_without_keys(host):
    status = host.run(as_user("ccq status", login_shell=True))
    assert status.rc == 0, status.stdout + status.stderr
    assert re.search(r"^proxy\s+up \(systemd ccq-litellm.service, pid \d+, up ", status.stdout, re.M)
    assert f"127.0.0.1:{PROXY_PORT}" in status.stdout
    assert re.search(rf"^model\s+{MODEL_ALIAS} -> cerebras/\S+ at http://127.0.0.1:\d+/v1", status.stdout, re.M)
    assert re.search(r"litellm 1\.74\.0\.post2, openai 1\.99\.\d+, claude 2\.", status.stdout)
    logs = host.run(as_user("ccq logs -n 20", login_shell=True))
    assert logs.rc == 0 and "the journal cannot be read" not in logs.stdout, logs.stdout
    assert logs.stdout.strip()
    master = host.file(MASTER_KEY_FILE).content_string.strip()
    assert SENTINEL_KEY not in logs.stdout and master not in logs.stdout


def test_a_stopped_service_is_named_and_its_fix_starts_it(host):
    user(host, "systemctl --user stop ccq-litellm.service")
    try:
        doctor = Doctor(host)
        doctor.assert_names("service")
        assert doctor.fix("service") == "systemctl --user start ccq-litellm.service"
        user(host, doctor.fix("service"))
        wait_healthy(host)
    finally:
        if not healthy(host):
            restart_proxy(host)
    Doctor(host).assert_clean()


def test_ccq_and_the_proxy_on_different_ports_are_named_with_both_ports(host):
    # ccq talks to another port than the one the proxy listens on (no restart needed to show it).
    other = PROXY_PORT + 1
    assert not healthy(host, other)
    with preserved(host, FUNCTIONS):
        host.run(f"sed -i 's|http://127.0.0.1:{PROXY_PORT}\"|http://127.0.0.1:{other}\"|' {FUNCTIONS}")
        doctor = Doctor(host)
        doctor.assert_names("port")
        assert f"nothing answers on 127.0.0.1:{other}, the port ccq uses" in doctor.output
        assert f"listens on 127.0.0.1:{PROXY_PORT}" in doctor.output
    Doctor(host).assert_clean()


def test_a_key_rotated_without_a_restart_is_a_401(host):
    # The new key is made and written inside python: it never appears on a command line.
    rotate = ("python3 -c \"import re, secrets, pathlib; k = 'sk-ccq-' + secrets.token_hex(20); "
              f"pathlib.Path('{MASTER_KEY_FILE}').write_text(k); e = pathlib.Path('{ENV_FILE}'); "
              "e.write_text(re.sub(r'(?m)^LITELLM_MASTER_KEY=.*$', 'LITELLM_MASTER_KEY=' + k, e.read_text()))\"")
    with preserved(host, MASTER_KEY_FILE, ENV_FILE):
        user(host, rotate)
        doctor = Doctor(host)
        doctor.assert_names("auth")
        assert "older master key" in doctor.output
        assert doctor.fix("auth") == "systemctl --user restart ccq-litellm.service"
    # The files hold the key the running proxy was started with again.
    Doctor(host).assert_clean()


def test_openai_1_100_in_litellms_venv_is_named_and_crash_loops_the_proxy(host):
    show = user(host, f"{VENV}/bin/python -m pip show openai").stdout
    original = re.search(r"(?m)^Version: (\S+)", show).group(1)
    try:
        user(host, f"{PIP_ENV} {VENV}/bin/python -m pip install --quiet --no-deps openai==1.100.0")
        # The running proxy imported openai 1.99 before: only the venv is wrong, so far.
        doctor = Doctor(host)
        doctor.assert_names("versions")
        assert "openai 1.100.0" in doctor.output
        # A restart now dies at import: doctor shows the crash loop and its error lines.
        user(host, "systemctl --user restart ccq-litellm.service")
        deadline = time.monotonic() + 180
        while "ActiveState=failed" not in host.run(as_user("systemctl --user show -p ActiveState ccq-litellm.service")).stdout:
            assert time.monotonic() < deadline, "the proxy did not give up restarting (StartLimitBurst)"
            time.sleep(2)
        doctor = Doctor(host)
        # ccq's callback itself imports fine: it is LiteLLM's proxy that dies on openai 1.100.
        doctor.assert_names("service", "versions")
        service_block = doctor.output.split("FAIL  service", 1)[1].split("\nFAIL ", 1)[0]
        assert "crash-looping" in service_block and "ResponseTextConfig" in service_block, doctor.output
        # Doctor's fix, as printed: pip takes the newest 1.99.x, then the service restarts.
        assert "reset-failed" in doctor.fix("versions")
        user(host, f"export {PIP_ENV}; {doctor.fix('versions')}")
        wait_healthy(host)
        Doctor(host).assert_clean()
    finally:
        now = re.search(r"(?m)^Version: (\S+)", user(host, f"{VENV}/bin/python -m pip show openai").stdout).group(1)
        if now != original:  # a newer 1.99.x appeared on PyPI: put back exactly what was there
            user(host, f"{PIP_ENV} {VENV}/bin/python -m pip install --quiet --no-deps openai=={original}")
            restart_proxy(host)
        elif not healthy(host):
            restart_proxy(host)
    Doctor(host).assert_clean()


# The launcher (which the unit runs) is the one place the proxy's command line is written:
# (the edit, what the edited launcher then holds or lacks, the check that must name it).
LAUNCHER_FAULTS = {
    "drop_params added": ("s/ --telemetry False$/& --drop_params/", "--telemetry False --drop_params", True,
                          "drop-params"),
    "host 127.0.0.1 gone": ("s/ --host 127.0.0.1 / /", "--host 127.0.0.1 --port", False, "loopback"),
}


@pytest.mark.parametrize(("edit", "text", "present", "check"), LAUNCHER_FAULTS.values(), ids=LAUNCHER_FAULTS.keys())
def test_a_launcher_fault_is_named_before_any_restart(host, edit, text, present, check):
    with preserved(host, LAUNCHER):
        host.run(f"sed -i '{edit}' {LAUNCHER}")
        assert (text in host.file(LAUNCHER).content_string) is present
        doctor = Doctor(host)
        doctor.assert_names(check)
        assert LAUNCHER in doctor.output.split(f"FAIL  {check}", 1)[1].splitlines()[0]
    Doctor(host).assert_clean()


def test_a_config_without_the_callback_line_is_named(host):
    with preserved(host, CONFIG):
        host.run(f"sed -i '/callbacks:/d' {CONFIG}")
        Doctor(host).assert_names("callback")
    Doctor(host).assert_clean()


def test_unset_routing_variables_are_named(host):
    with preserved(host, FUNCTIONS):
        host.run(f"sed -i '/^ *\\(ANTHROPIC_DEFAULT_SONNET_MODEL\\|ANTHROPIC_DEFAULT_OPUS_MODEL\\|"
                 f"CLAUDE_CODE_SUBAGENT_MODEL\\)=/d' {FUNCTIONS}")
        doctor = Doctor(host)
        doctor.assert_names("routing")
        assert "CLAUDE_CODE_SUBAGENT_MODEL is unset" in doctor.output
    Doctor(host).assert_clean()


def test_unset_small_fast_variables_are_named(host):
    with preserved(host, FUNCTIONS):
        host.run(f"sed -i '/^ *\\(ANTHROPIC_SMALL_FAST_MODEL\\|ANTHROPIC_DEFAULT_HAIKU_MODEL\\)=/d' {FUNCTIONS}")
        Doctor(host).assert_names("small-fast")
    Doctor(host).assert_clean()


def test_a_stale_alias_is_named_as_model_not_found(host):
    with preserved(host, CONFIG):
        host.run(f"sed -i 's/model_name: \"{MODEL_ALIAS}\"/model_name: \"ccq-renamed-alias\"/' {CONFIG}")
        doctor = Doctor(host)
        doctor.assert_names("alias")
        assert f"ccq asks for model '{MODEL_ALIAS}'" in doctor.output and "ccq-renamed-alias" in doctor.output
    Doctor(host).assert_clean()


def _restart_fake(host: Any) -> None:
    assert host.run("systemctl daemon-reload && systemctl restart fake-cerebras.service").rc == 0
    port = re.search(r"--port (\d+)", host.file(FAKE_UNIT).content_string).group(1)
    deadline = time.monotonic() + 30
    while host.run(f"curl -fsS -o /dev/null http://127.0.0.1:{port}/health").rc != 0:
        assert time.monotonic() < deadline, "the fake Cerebras did not come back"
        time.sleep(0.5)


def test_a_model_the_upstream_no_longer_serves_is_named_with_what_it_serves(host):
    unit = re.sub(r"\\\n\s*", " ", host.file(FAKE_UNIT).content_string)  # join continued lines
    exec_start = re.search(r"(?m)^ExecStart=(.*)$", unit).group(1)
    drop_in = f"[Service]\nExecStart=\nExecStart={exec_start} --models gemma-4-31b,zai-glm-4.7\n"
    host.run(f"mkdir -p {FAKE_DROP_IN.rsplit('/', 1)[0]} && printf %s {shlex.quote(drop_in)} > {FAKE_DROP_IN}")
    try:
        _restart_fake(host)
        doctor = Doctor(host)
        doctor.assert_names("model")
        # The converged model is the first preference (gpt-oss-120b), which this list lacks.
        assert "it serves: gemma-4-31b, zai-glm-4.7" in doctor.output
    finally:
        host.run(f"rm -rf {FAKE_DROP_IN.rsplit('/', 1)[0]}")
        _restart_fake(host)
    Doctor(host).assert_clean()


def test_loose_file_modes_are_named_and_doctors_chmod_fixes_them(host):
    user(host, f"chmod 644 {API_KEY_FILE} && chmod 640 {ENV_FILE} && chmod 755 {SECRETS_DIR}")
    try:
        doctor = Doctor(host)
        doctor.assert_names("file-modes")
        user(host, doctor.fix("file-modes"))
    finally:
        user(host, f"chmod 600 {API_KEY_FILE} {ENV_FILE} && chmod 700 {SECRETS_DIR}")
    Doctor(host).assert_clean()
    assert host.file(API_KEY_FILE).mode == 0o600 and host.file(SECRETS_DIR).mode == 0o700


def test_a_proxy_variable_without_no_proxy_is_named(host):
    proxy = "export HTTPS_PROXY=http://proxy.invalid:3128 HTTP_PROXY=http://proxy.invalid:3128; unset NO_PROXY no_proxy; "
    # ccq itself adds 127.0.0.1 to NO_PROXY for Claude Code: the shell's variable alone is a warning.
    doctor = Doctor(host, prelude=proxy)
    assert doctor.rc == 0 and doctor.statuses["proxy-env"] == "warn", doctor.output
    # A ccq that does not (older, or edited by hand) lets the proxy variable capture loopback.
    with preserved(host, FUNCTIONS):
        host.run(f"sed -i '/^ *\\(NO_PROXY\\|no_proxy\\)=/d' {FUNCTIONS}")
        doctor = Doctor(host, prelude=proxy)
        doctor.assert_names("proxy-env")
        assert "HTTPS_PROXY" in doctor.output.split("FAIL  proxy-env", 1)[1]
    Doctor(host).assert_clean()


def test_the_fleet_playbook_fails_the_host_and_shows_doctors_lines():
    clean = run_playbook(playbook="playbooks/doctor.yml")
    assert clean.returncode == 0, clean.stdout[-3000:]
    assert "0 failed" in clean.stdout


def test_the_fleet_playbook_fails_a_host_whose_doctor_fails(host):
    user(host, f"chmod 644 {API_KEY_FILE}")
    try:
        result = run_playbook(playbook="playbooks/doctor.yml")
    finally:
        user(host, f"chmod 600 {API_KEY_FILE}")
    assert result.returncode != 0
    assert "FAIL  file-modes" in result.stdout and f"chmod 600 {API_KEY_FILE}" in result.stdout
    assert SENTINEL_KEY not in result.stdout
