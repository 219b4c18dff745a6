"""A port held by another process is named by the play, which neither hangs nor leaves a
service restarting forever (issue 4)."""

from __future__ import annotations

import time

from helpers.converged_host import as_user, converged_host
from helpers.playbook import play_output, run_playbook

PROXY_PORT = converged_host().proxy_port


def _healthy(host) -> bool:
    return host.run(f"curl -fsS -o /dev/null http://127.0.0.1:{PROXY_PORT}/health/liveliness").rc == 0


def test_a_taken_port_is_reported_with_the_process_that_holds_it(host):
    host.run(as_user("systemctl --user stop ccq-litellm.service"))
    blocker = host.run(
        f"setsid sudo -u bob python3 -m http.server {PROXY_PORT} --bind 127.0.0.1 >/dev/null 2>&1 & "
        "sleep 1; echo started")
    assert "started" in blocker.stdout
    try:
        result = run_playbook("--tags", "service")
        assert result.returncode != 0
        output = play_output(result)
        assert f"Port {PROXY_PORT} on 127.0.0.1 is already taken by" in output, output[-2000:]
        assert '"python3"' in output, output[-2000:]
        # The play stopped before starting the service: nothing is left restarting.
        state = host.run(as_user("systemctl --user is-active ccq-litellm.service")).stdout.strip()
        assert state in ("inactive", "failed")
    finally:
        host.run(f"pkill -f 'http.server {PROXY_PORT}'")
        host.run(as_user("systemctl --user start ccq-litellm.service"))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not _healthy(host):
        time.sleep(1)
    assert _healthy(host)
