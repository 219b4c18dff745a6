"""Runs limited by tags (site.yml: proxy = litellm_proxy, service = litellm_service).

litellm_proxy notifies "ccq proxy settings changed", whose handler lives in litellm_service;
the service manager it restarts through is decided by a task tagged always. So `--tags proxy`
alone with a changed setting restarts the proxy: it once rewrote the config and restarted
nothing, leaving the old settings running until the next reboot.
"""

from __future__ import annotations

import time

from helpers.converged_host import converged_host, service_pid
from helpers.playbook import changed_tasks, play_output, run_playbook

HOME, PROXY_PORT = converged_host().home, converged_host().proxy_port

ENV_FILE = f"{HOME}/.config/ccq/litellm.env"
RESTARTED = "litellm_service : The ccq proxy is restarted"


def _wait_healthy(host, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while host.run(f"curl -fsS -o /dev/null http://127.0.0.1:{PROXY_PORT}/health/liveliness").rc != 0:
        assert time.monotonic() < deadline, f"the proxy did not answer within {timeout}s"
        time.sleep(1)


def _proxy_environment(host, pid: str) -> str:
    # Read as root from /proc: the running proxy's own environment, not the file.
    return host.run(f"tr '\\0' '\\n' < /proc/{pid}/environ").stdout


def test_a_proxy_only_run_with_a_changed_setting_restarts_the_proxy(host):
    pid_before = service_pid(host)
    assert pid_before not in ("", "0")
    assert "CCQ_QUOTA_MAX_WAIT=60\n" in host.file(ENV_FILE).content_string
    try:
        result = run_playbook("--tags", "proxy", "-e", "ccq_quota_max_wait=7")
        assert result.returncode == 0, play_output(result)[-3000:]
        assert "CCQ_QUOTA_MAX_WAIT=7\n" in host.file(ENV_FILE).content_string
        assert RESTARTED in changed_tasks(result.stdout), result.stdout[-3000:]
        pid_after = service_pid(host)
        assert pid_after not in ("", "0", pid_before)
        _wait_healthy(host)
        # The new process runs with the new setting.
        assert "CCQ_QUOTA_MAX_WAIT=7\n" in _proxy_environment(host, service_pid(host))
    finally:
        restored = run_playbook("--tags", "proxy")
        _wait_healthy(host)
    assert restored.returncode == 0, play_output(restored)[-3000:]
    assert RESTARTED in changed_tasks(restored.stdout)
    assert "CCQ_QUOTA_MAX_WAIT=60\n" in _proxy_environment(host, service_pid(host))
