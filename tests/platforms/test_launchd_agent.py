"""The macOS launchd agent: the plist, the launcher it runs, and how the role drives launchctl.

The Darwin path of roles/litellm_service runs for real into a scratch home, with this host
reported as Darwin and the macOS tools faked (platform_support.py). The fake launchctl keeps
state, so the order and number of bootstrap / bootout calls is what the role would do on a
Mac; see DarwinConverges for the four runs.
"""

from __future__ import annotations

import plistlib
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from platform_support import (
    SENTINEL_API_KEY,
    SENTINEL_MASTER_KEY,
    TEST_UID,
    DarwinConverges,
    HealthServer,
    write_executable,
)

LABEL = "ccq-litellm"


def plist_path(home: Path) -> Path:
    return home / "Library" / "LaunchAgents" / f"{LABEL}.plist"


def launcher_path(home: Path) -> Path:
    """The one script that runs the proxy (roles/litellm_service), here for launchd."""
    return home / ".local" / "share" / "ccq" / "ccq-proxy"


def load_plist(home: Path) -> dict:
    return plistlib.loads(plist_path(home).read_bytes())


def test_plist_parses_and_names_its_label_after_the_file(darwin: DarwinConverges):
    agent = load_plist(darwin.home)
    assert agent["Label"] == LABEL == plist_path(darwin.home).stem


def test_agent_starts_at_load_and_is_restarted_when_it_dies(darwin: DarwinConverges):
    agent = load_plist(darwin.home)
    assert agent["RunAtLoad"] is True
    # Restarted after a crash or a kill, not after the clean exit of a redundant copy.
    assert agent["KeepAlive"] == {"SuccessfulExit": False}
    # A proxy that cannot start must not be respawned in a tight loop.
    assert agent["ThrottleInterval"] >= 5


def test_stdout_and_stderr_go_to_the_users_ccq_log_directory(darwin: DarwinConverges):
    agent = load_plist(darwin.home)
    log_dir = darwin.home / "Library" / "Logs" / "ccq"
    for key in ("StandardOutPath", "StandardErrorPath"):
        assert Path(agent[key]).parent == log_dir, key
    assert log_dir.is_dir()
    assert (log_dir.stat().st_mode & 0o077) == 0, "the log directory must be private to the user"
    assert agent["Umask"] == 0o077


def test_plist_holds_no_secret_and_no_environment(darwin: DarwinConverges):
    raw = plist_path(darwin.home).read_bytes()
    assert SENTINEL_API_KEY.encode() not in raw
    assert SENTINEL_MASTER_KEY.encode() not in raw
    agent = plistlib.loads(raw)
    # `launchctl print` shows EnvironmentVariables to any process of the user.
    assert "EnvironmentVariables" not in agent
    assert agent["ProgramArguments"] == ["/bin/sh", str(launcher_path(darwin.home)), "--unless-served"]


def test_the_launcher_is_the_only_start_script(darwin: DarwinConverges):
    # The agent's start script of an older ccq (platform_support.py puts one there) is gone.
    assert not (darwin.home / ".config" / "ccq" / "litellm-launchd.sh").exists()


def test_launcher_holds_no_secret_and_is_private(darwin: DarwinConverges):
    launcher = launcher_path(darwin.home)
    text = launcher.read_text()
    assert SENTINEL_API_KEY not in text and SENTINEL_MASTER_KEY not in text
    assert (launcher.stat().st_mode & 0o077) == 0


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_launcher_is_valid_shell(darwin: DarwinConverges, shell: str):
    proc = subprocess.run([shell, "-n", str(launcher_path(darwin.home))], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def stand_in_litellm(darwin: DarwinConverges, tmp_path: Path):
    """A `litellm` in the pipx venv that reports its argv, working directory and environment."""
    venv = darwin.home / ".local" / "share" / "pipx" / "venvs" / "litellm"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    report = tmp_path / "report"
    write_executable(venv / "bin" / "litellm",
                     f'#!/bin/sh\n{{ printf "%s\\n" "$@"; echo ---; pwd; echo ---; env; }} >"{report}"\n')
    yield report
    shutil.rmtree(venv)


def run_agent(home: Path) -> subprocess.CompletedProcess[str]:
    """What launchd runs: the plist's ProgramArguments, from / with a bare environment (no key
    may come from the caller)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home)}
    return subprocess.run(load_plist(home)["ProgramArguments"], env=env, cwd="/", capture_output=True, text=True,
                          timeout=60)


def test_the_agent_starts_litellm_on_loopback_with_the_keys_from_the_env_file_only(
        darwin: DarwinConverges, stand_in_litellm: Path):
    proc = run_agent(darwin.home)
    assert proc.returncode == 0, proc.stderr
    argv, cwd, environ = stand_in_litellm.read_text().split("---\n")
    args = argv.splitlines()
    assert args[args.index("--host") + 1] == "127.0.0.1"
    assert args[args.index("--port") + 1] == str(darwin.port)
    assert args[args.index("--config") + 1] == str(darwin.home / ".config" / "ccq" / "litellm_config.yaml")
    assert "--drop_params" not in args
    assert SENTINEL_API_KEY not in argv and SENTINEL_MASTER_KEY not in argv
    assert cwd.strip() == str(darwin.home / ".config" / "ccq")
    assert f"CEREBRAS_API_KEY={SENTINEL_API_KEY}" in environ.splitlines()
    assert f"LITELLM_MASTER_KEY={SENTINEL_MASTER_KEY}" in environ.splitlines()
    assert "LITELLM_LOCAL_MODEL_COST_MAP=True" in environ.splitlines()
    # The start marker `ccq doctor` reads goes to the agent's log (launchd's StandardOutPath).
    assert proc.stdout.startswith("ccq: starting the proxy at ")


def test_a_second_copy_of_the_agent_stays_down_while_the_port_is_served(
        darwin: DarwinConverges, stand_in_litellm: Path):
    with HealthServer(darwin.port):
        started = time.monotonic()
        proc = run_agent(darwin.home)
    assert proc.returncode == 0, proc.stderr  # 0: KeepAlive does not restart it
    assert not stand_in_litellm.exists(), "litellm was started although the port was served"
    # It waited (a copy being replaced stops answering within that time).
    assert time.monotonic() - started >= 4


def test_the_agent_refuses_to_start_without_the_env_file(darwin: DarwinConverges, stand_in_litellm: Path,
                                                      tmp_path: Path):
    """No env file, no keys: a non-zero exit (launchd retries) instead of a keyless proxy."""
    env_file = darwin.home / ".config" / "ccq" / "litellm.env"
    moved = tmp_path / "litellm.env"
    shutil.move(env_file, moved)
    try:
        proc = run_agent(darwin.home)
    finally:
        shutil.move(moved, env_file)
    assert proc.returncode != 0
    assert not stand_in_litellm.exists()


def test_plist_is_checked_with_plutil_before_it_is_written(darwin: DarwinConverges):
    assert any(c[:2] == ["plutil", "-lint"] for c in darwin.calls[0])


def test_without_gui_session_the_first_run_bootstraps_once_into_the_user_domain(darwin: DarwinConverges):
    # Exactly one load: the reload handler does not restart an agent that was just loaded.
    assert darwin.launchctl_changes(1) == [
        ["launchctl", "bootstrap", f"user/{TEST_UID}", str(plist_path(darwin.home))]]


def test_every_run_waits_until_the_proxy_answers_on_its_port(darwin: DarwinConverges):
    for run, requests in enumerate(darwin.health_requests, start=1):
        assert "/health/liveliness" in requests, f"run {run}"


def test_second_run_changes_nothing_and_leaves_launchd_alone(darwin: DarwinConverges):
    assert darwin.runs[1].changed == 0, darwin.runs[1].tail()
    assert darwin.launchctl_changes(2) == []


def test_with_a_gui_session_the_agent_moves_from_the_user_to_the_gui_domain(darwin: DarwinConverges):
    assert darwin.launchctl_changes(3) == [
        ["launchctl", "bootout", f"user/{TEST_UID}/{LABEL}"],
        ["launchctl", "bootstrap", f"gui/{TEST_UID}", str(plist_path(darwin.home))],
    ]


def test_a_changed_plist_reloads_the_agent_with_bootout_then_bootstrap(darwin: DarwinConverges):
    assert darwin.launchctl_changes(4) == [
        ["launchctl", "bootout", f"gui/{TEST_UID}/{LABEL}"],
        ["launchctl", "bootstrap", f"gui/{TEST_UID}", str(plist_path(darwin.home))],
    ]
