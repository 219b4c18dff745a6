"""On a host without a service manager (containers, WSL without systemd) the shell starts the
proxy, so that the first ccq after a login finds it ready (issue 25).

Each test lays out a home as the roles do (helpers/shell_home.py: the real ccq functions and
launcher, the pinned LiteLLM with ccq's callback, the pinned Claude Code; only Cerebras is a
stand-in) and opens shells in it the way a terminal does (`bash -i`) or a script does. Every
wait is for something the test reads: the proxy's health, a process, a log line.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.http import wait_http_ok
from helpers.shell_home import ShellHome

pytestmark = pytest.mark.integration

# The proxy's start on this machine, with room for a busy CI runner.
STARTUP_TIMEOUT = 120


@pytest.fixture
def make_home(tmp_path: Path, litellm_venv: Path, claude_code_bin: Path,
              make_fake: Callable[..., Any]) -> Iterator[Callable[..., ShellHome]]:
    homes: list[ShellHome] = []

    def _make(**options: Any) -> ShellHome:
        home = ShellHome(tmp_path / f"user{len(homes)}", litellm_venv, claude_code_bin, make_fake(), **options)
        homes.append(home.build())
        return home

    yield _make
    for home in homes:
        home.stop_proxies()


def test_an_interactive_shell_starts_the_proxy_in_the_background(make_home):
    home = make_home()
    shell = home.interactive_shell("true")
    shell.communicate(timeout=60)
    # The shell has ended; the process it started lives on (the launcher, until it execs LiteLLM).
    pid = home.proxy_pid()
    assert shell.returncode == 0 and pid is not None
    os.kill(pid, 0)
    wait_http_ok(home.health_url, STARTUP_TIMEOUT)
    assert home.proxy_processes() == [pid] and home.starts() == 1


def test_shells_opened_together_start_one_proxy_and_later_shells_none(make_home):
    home = make_home()
    # A terminal restoring four panes at login.
    shells = [home.interactive_shell("true") for _ in range(4)]
    for shell in shells:
        shell.communicate(timeout=60)
        assert shell.returncode == 0
    wait_http_ok(home.health_url, STARTUP_TIMEOUT)
    home.interactive_shell("true").communicate(timeout=60)
    assert home.starts() == 1 and len(home.proxy_processes()) == 1, home.paths["proxy_log"].read_text()


def test_a_script_that_reads_the_rc_file_starts_nothing(make_home):
    home = make_home()
    done = home.shell("type ccq >/dev/null")
    # The start would have written its pidfile before the shell returned.
    assert done.returncode == 0 and home.proxy_pid() is None and home.starts() == 0, done.stderr


def test_with_start_with_shell_off_the_shell_leaves_the_start_to_ccq(make_home):
    home = make_home(start_with_shell=False)
    home.interactive_shell("true").communicate(timeout=60)
    assert home.proxy_pid() is None and home.starts() == 0


def test_where_a_service_manager_keeps_the_proxy_up_the_shell_starts_nothing(make_home):
    home = make_home(service_manager="systemd")
    home.interactive_shell("true").communicate(timeout=60)
    assert home.proxy_pid() is None and home.starts() == 0


def test_ccq_after_the_proxy_was_killed_starts_it_again_and_answers(make_home):
    """`ccq doctor`'s fix for a proxy without a service manager: `kill $(cat pidfile)`, then ccq."""
    home = make_home()
    home.interactive_shell("true").communicate(timeout=60)
    wait_http_ok(home.health_url, STARTUP_TIMEOUT)
    pid = home.proxy_pid()
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: pid not in home.proxy_processes(), "the killed proxy to exit")
    done = home.shell('ccq -p "Say hello."', timeout=STARTUP_TIMEOUT + 180)
    assert done.returncode == 0 and done.stdout.strip(), done.stdout + done.stderr
    assert home.starts() == 2 and home.proxy_pid() != pid
    # The answer came through the new proxy from the stand-in Cerebras.
    assert home.upstream.records(), "no request reached the upstream"


def test_ccq_waits_while_another_start_holds_the_lock_and_starts_the_proxy_once_it_is_free(make_home):
    """Another shell's start under way (or a killed proxy still stopping) holds the launcher's
    lock: ccq starts nothing meanwhile, and does not give up when it finds no proxy either."""
    home = make_home(start_with_shell=False)
    with open(str(home.paths["proxy_pidfile"]) + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ccq = subprocess.Popen(["bash", "-c", '. ~/.bashrc; ccq -p "Say hello."'], env=home.env(), cwd=home.home,
                               text=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # ccq asked the launcher to start and is now in its wait loop (its sleep between looks).
        wait_until(lambda: waiting_child(ccq.pid), "ccq to wait for the proxy")
        assert home.starts() == 0
    out, err = ccq.communicate(timeout=STARTUP_TIMEOUT + 180)
    assert ccq.returncode == 0 and out.strip(), out + err
    assert home.starts() == 1


def waiting_child(pid: int) -> bool:
    found = subprocess.run(["pgrep", "-P", str(pid), "-x", "sleep"], capture_output=True, check=False)
    return found.returncode == 0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout}s for {what}")
        time.sleep(0.05)


def test_the_first_ccq_in_a_new_shell_waits_for_the_proxy_the_shell_started(make_home):
    """The command typed at once into a new terminal: it finds the start under way, waits for it
    rather than starting another, and answers."""
    home = make_home()
    shell = home.interactive_shell('ccq -p "Say hello."')
    out, err = shell.communicate(timeout=STARTUP_TIMEOUT + 180)
    assert shell.returncode == 0 and out.strip(), out + err
    assert home.starts() == 1 and len(home.proxy_processes()) == 1


def test_the_launcher_says_how_to_use_it(make_home):
    home = make_home()
    done = subprocess.run(["sh", str(home.paths["proxy_launcher"]), "--bogus"], capture_output=True, text=True,
                          check=False, env=home.env())
    assert done.returncode == 2 and "--prestart" in done.stderr
