"""The first ccq after a login, on a host without a service manager (issue 25).

A home laid out as the roles lay it out (tests/helpers/shell_home.py: the real ccq functions
and launcher, the pinned LiteLLM with ccq's callback, the pinned Claude Code, the stand-in
Cerebras). Each figure is the wall time of one `ccq -p` that Claude Code answers:

- warm: the proxy already runs;
- typed at once: `bash -i -c 'ccq -p ...'`, the command in the login shell itself (the shell
  starts the proxy, ccq finds the start under way and waits for it);
- typed N s after login: an interactive shell opens (and starts the proxy), and ccq runs N s
  later, as a person who reads the prompt and types;
- without the shell's start (ccq_proxy_start_with_shell: false): ccq starts it and waits, the
  behaviour before issue 25.

Plus the time from the shell opening until the proxy answers its health check.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stats import median
from tests.helpers.http import wait_http_ok
from tests.helpers.shell_home import ShellHome
from tests.helpers.stack import FakeUpstream

PROMPT = 'ccq -p "Say hello."'
# A person who has just logged in reads the prompt and types the command.
TYPING_DELAYS = (2.0,)


def _timed(run: Any) -> float:
    began = time.monotonic()
    done = run()
    seconds = time.monotonic() - began
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"ccq failed ({done.returncode}): {(done.stdout + done.stderr)[-600:]}")
    return seconds


def _interactive(home: ShellHome, commands: str) -> subprocess.CompletedProcess[str]:
    shell = home.interactive_shell(commands)
    out, err = shell.communicate(timeout=300)
    return subprocess.CompletedProcess(shell.args, shell.returncode, out, err)


def _wait_healthy(home: ShellHome) -> None:
    try:
        wait_http_ok(home.health_url, 120)
    except TimeoutError as exc:
        log = home.paths["proxy_log"]
        raise RuntimeError(f"{exc}; {log}: {log.read_text()[-1500:] if log.exists() else 'none'}") from None


def first_call_after_login(venv: Path, claude: Path, reps: int = 3) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ccq-bench-login-") as scratch:
        root = Path(scratch)
        fake = FakeUpstream(root / "fake").start()
        homes = {"with": ShellHome(root / "with", venv, claude, fake).build(),
                 "without": ShellHome(root / "without", venv, claude, fake, start_with_shell=False).build()}
        figures: dict[str, list[float]] = {"warm": [], "at_once": [], "without_shell_start": [],
                                           "shell_to_healthy": []}
        figures.update({f"after_{delay:g}s": [] for delay in TYPING_DELAYS})
        try:
            home, without = homes["with"], homes["without"]
            for _ in range(reps):
                # A login: no proxy runs.
                home.stop_proxies()
                began = time.monotonic()
                home.interactive_shell("true").communicate(timeout=60)
                _wait_healthy(home)
                figures["shell_to_healthy"].append(time.monotonic() - began)
                figures["warm"].append(_timed(lambda: home.shell(PROMPT)))

                home.stop_proxies()
                figures["at_once"].append(_timed(lambda: _interactive(home, PROMPT)))

                for delay in TYPING_DELAYS:
                    home.stop_proxies()
                    opened = time.monotonic()
                    home.interactive_shell("true").communicate(timeout=60)
                    time.sleep(max(0.0, opened + delay - time.monotonic()))
                    figures[f"after_{delay:g}s"].append(_timed(lambda: home.shell(PROMPT)))

                without.stop_proxies()
                without.interactive_shell("true").communicate(timeout=60)
                figures["without_shell_start"].append(_timed(lambda: without.shell(PROMPT)))
        finally:
            for each in homes.values():
                each.stop_proxies()
            fake.stop()
    result: dict[str, Any] = {name: {"seconds": [round(s, 2) for s in values], "median": median(values)}
                              for name, values in figures.items()}
    result["typing_delays"] = list(TYPING_DELAYS)
    return result
