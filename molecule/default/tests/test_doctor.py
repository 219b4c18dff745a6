"""`ccq doctor` on the converged target, for the faults that need a real systemd user service:
a stopped service, a crash loop (systemd's restarts, the journal's error lines), status and logs
as systemd and the journal show them, and the fleet playbook. Doctor must name each with FAIL
and exit non-zero, its fix must work, and doctor must be clean again. The faults doctor reads
from files (the launcher, the config, ccq's environment, key files, the upstream's models) are
tests/unit/test_doctor.py's and tests/integration/test_doctor_end_to_end.py's.

Every test leaves the target as it found it: the proxy is healthy again before the next test runs.
"""

from __future__ import annotations

import re
import time
from typing import Any

from helpers.converged_host import as_user, converged_host, proxy_answers
from helpers.playbook import play_output, run_playbook

TARGET = converged_host()
PROXY_PORT, MODEL_ALIAS = TARGET.proxy_port, TARGET.model_alias
MASTER_KEY_FILE, API_KEY_FILE = TARGET.path("master_key_file"), TARGET.path("api_key_file")
# The Cerebras key of Molecule's inventory: a sentinel, searched for in what doctor prints.
SENTINEL_KEY = TARGET.settings["ccq_cerebras_api_key"]
VENV = TARGET.path("litellm_venv")
STATUS_LINE = re.compile(r"^(ok|warn|FAIL)\s+(\S+)\s")
# pip inside the target trusts the host's CA through the system store the roles filled.
PIP_ENV = "PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1"


class Doctor:
    """One `ccq doctor` run as the user would type it in a new terminal."""

    def __init__(self, host: Any) -> None:
        result = host.run(as_user("cd ~ && ccq doctor", login_shell=True))
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


def wait_healthy(host: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proxy_answers(host):
            return
        time.sleep(1)
    raise AssertionError(f"the proxy did not answer on {PROXY_PORT} within {timeout}s")


def restart_proxy(host: Any) -> None:
    user(host, "systemctl --user reset-failed ccq-litellm.service; systemctl --user restart ccq-litellm.service")
    wait_healthy(host)


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
        if not proxy_answers(host):
            restart_proxy(host)
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
        show_state = as_user("systemctl --user show -p ActiveState ccq-litellm.service")
        while "ActiveState=failed" not in host.run(show_state).stdout:
            assert time.monotonic() < deadline, "the proxy did not give up restarting (StartLimitBurst)"
            time.sleep(2)
        doctor = Doctor(host)
        # ccq's callback itself imports fine: it is LiteLLM's proxy that dies on openai 1.100.
        doctor.assert_names("service", "versions")
        service_block = doctor.output.split("FAIL  service", 1)[1].split("\nFAIL ", 1)[0]
        assert "crash-looping" in service_block and "ResponseTextConfig" in service_block, doctor.output
        # Doctor's fix, as printed: provisioning rebuilds the venv from the lock and restarts
        # the proxy, which gave up restarting (StartLimitBurst) a moment ago.
        assert "re-run the provisioning" in doctor.fix("versions") and "lock" in doctor.fix("versions")
        repaired = run_playbook("--tags", "proxy")
        assert repaired.returncode == 0, play_output(repaired)[-3000:]
        wait_healthy(host)
        Doctor(host).assert_clean()
    finally:
        now = re.search(r"(?m)^Version: (\S+)", user(host, f"{VENV}/bin/python -m pip show openai").stdout).group(1)
        if now != original:  # a newer 1.99.x appeared on PyPI: put back exactly what was there
            user(host, f"{PIP_ENV} {VENV}/bin/python -m pip install --quiet --no-deps openai=={original}")
            restart_proxy(host)
        elif not proxy_answers(host):
            restart_proxy(host)
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
