"""The macOS launchd agent: the plist, its wrapper, and how the role drives launchctl.

The Darwin path of roles/litellm_service runs for real into a scratch home, with this host
reported as Darwin and the macOS tools faked (conftest.py). The fake launchctl keeps state, so
the order and number of bootstrap / bootout calls is what the role would do on a Mac.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest
from platform_support import (
    SENTINEL_API_KEY,
    SENTINEL_MASTER_KEY,
    TEST_UID,
    ConvergedHome,
    FakeMac,
    HealthServer,
    write_executable,
)

LABEL = "ccq-litellm"


def plist_path(home: Path) -> Path:
    return home / "Library" / "LaunchAgents" / f"{LABEL}.plist"


def wrapper_path(home: Path) -> Path:
    return home / ".config" / "ccq" / "litellm-launchd.sh"


def load_plist(home: Path) -> dict:
    return plistlib.loads(plist_path(home).read_bytes())


def test_plist_parses_and_names_its_label_after_the_file(darwin_home: ConvergedHome):
    agent = load_plist(darwin_home.home)
    assert agent["Label"] == LABEL == plist_path(darwin_home.home).stem


def test_agent_starts_at_load_and_is_kept_alive(darwin_home: ConvergedHome):
    agent = load_plist(darwin_home.home)
    assert agent["RunAtLoad"] is True
    assert agent["KeepAlive"] is True
    # A proxy that cannot start must not be respawned in a tight loop.
    assert agent["ThrottleInterval"] >= 5


def test_stdout_and_stderr_go_to_the_users_ccq_log_directory(darwin_home: ConvergedHome):
    agent = load_plist(darwin_home.home)
    log_dir = darwin_home.home / "Library" / "Logs" / "ccq"
    for key in ("StandardOutPath", "StandardErrorPath"):
        assert Path(agent[key]).parent == log_dir, key
    assert log_dir.is_dir()
    assert (log_dir.stat().st_mode & 0o077) == 0, "the log directory must be private to the user"
    assert agent["Umask"] == 0o077


def test_plist_holds_no_secret_and_no_environment(darwin_home: ConvergedHome):
    raw = plist_path(darwin_home.home).read_bytes()
    assert SENTINEL_API_KEY.encode() not in raw
    assert SENTINEL_MASTER_KEY.encode() not in raw
    agent = plistlib.loads(raw)
    # `launchctl print` shows EnvironmentVariables to any process of the user.
    assert "EnvironmentVariables" not in agent
    assert agent["ProgramArguments"] == ["/bin/sh", str(wrapper_path(darwin_home.home))]


def test_wrapper_holds_no_secret_and_is_private(darwin_home: ConvergedHome):
    wrapper = wrapper_path(darwin_home.home)
    text = wrapper.read_text()
    assert SENTINEL_API_KEY not in text and SENTINEL_MASTER_KEY not in text
    assert (wrapper.stat().st_mode & 0o077) == 0


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_wrapper_is_valid_shell(darwin_home: ConvergedHome, shell: str):
    proc = subprocess.run([shell, "-n", str(wrapper_path(darwin_home.home))], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_wrapper_starts_litellm_on_loopback_with_the_keys_from_the_env_file_only(
        darwin_home: ConvergedHome, tmp_path: Path):
    """Runs the wrapper with a stand-in litellm that reports its argv and environment."""
    home = darwin_home.home
    venv_bin = home / ".local" / "share" / "pipx" / "venvs" / "litellm" / "bin"
    venv_bin.mkdir(parents=True, exist_ok=True)
    report = tmp_path / "report"
    write_executable(venv_bin / "litellm",
                     f'#!/bin/sh\n{{ printf "%s\\n" "$@"; echo ---; pwd; echo ---; env; }} >"{report}"\n')
    try:
        # launchd starts agents with a bare environment: no key may come from the caller.
        env = {"PATH": "/usr/bin:/bin", "HOME": str(home)}
        proc = subprocess.run(["/bin/sh", str(wrapper_path(home))], env=env, capture_output=True, text=True,
                              timeout=30)
        assert proc.returncode == 0, proc.stderr
        argv, cwd, environ = report.read_text().split("---\n")
    finally:
        shutil.rmtree(venv_bin.parents[2])
    args = argv.splitlines()
    assert args[args.index("--host") + 1] == "127.0.0.1"
    assert "--port" in args and "--drop_params" not in args
    assert args[args.index("--config") + 1] == str(home / ".config" / "ccq" / "litellm_config.yaml")
    assert SENTINEL_API_KEY not in argv and SENTINEL_MASTER_KEY not in argv
    assert cwd.strip() == str(home / ".config" / "ccq")
    assert f"CEREBRAS_API_KEY={SENTINEL_API_KEY}" in environ.splitlines()
    assert f"LITELLM_MASTER_KEY={SENTINEL_MASTER_KEY}" in environ.splitlines()
    assert "LITELLM_LOCAL_MODEL_COST_MAP=True" in environ.splitlines()


def test_first_converge_bootstraps_the_agent_once_into_the_user_domain_without_gui(darwin_home: ConvergedHome):
    changes = [c for c in darwin_home.calls_after_first_run
               if c[0] == "launchctl" and c[1] in ("bootstrap", "bootout")]
    # Exactly one load: the reload handler does not restart an agent that was just loaded.
    assert changes == [["launchctl", "bootstrap", f"user/{TEST_UID}", str(plist_path(darwin_home.home))]]


def test_plist_was_checked_with_plutil_before_it_was_written(darwin_home: ConvergedHome):
    assert any(c[:2] == ["plutil", "-lint"] for c in darwin_home.calls_after_first_run)


def test_first_converge_waits_until_the_proxy_answers(darwin_home: ConvergedHome):
    assert "The proxy answers on loopback" in darwin_home.first_run.stdout
    assert "ok: [localhost]" in darwin_home.first_run.stdout.split("The proxy answers on loopback", 1)[1][:400]


def test_second_converge_changes_nothing_and_leaves_launchd_alone(darwin_home: ConvergedHome):
    run = darwin_home.second_run
    assert run.returncode == 0, run.tail()
    assert run.changed == 0, run.tail()
    assert darwin_home.mac.launchctl_changes() == [
        c for c in darwin_home.calls_after_first_run if c[0] == "launchctl" and c[1] in ("bootstrap", "bootout")]


def test_a_changed_plist_reloads_the_agent_with_bootout_then_bootstrap(
        tmp_path: Path, health_server: HealthServer):
    mac = FakeMac(tmp_path)
    mac.write_user_rc_files(".zshrc")
    mac.write_key_files()
    assert mac.converge(port=health_server.port).returncode == 0
    before = len(mac.launchctl_changes())
    # Another port changes the wrapper and the log line of the plist: launchd must reread them.
    with HealthServer() as other:
        run = mac.converge(port=other.port)
        assert run.returncode == 0, run.tail()
        assert "/health/liveliness" in other.paths
    domain_job = f"user/{TEST_UID}/{LABEL}"
    assert mac.launchctl_changes()[before:] == [
        ["launchctl", "bootout", domain_job],
        ["launchctl", "bootstrap", f"user/{TEST_UID}", str(plist_path(mac.home))],
    ]


def test_a_gui_session_gets_the_agent_in_its_gui_domain(tmp_path: Path, health_server: HealthServer):
    mac = FakeMac(tmp_path, gui_session=True)
    mac.write_user_rc_files(".zshrc")
    mac.write_key_files()
    run = mac.converge(port=health_server.port)
    assert run.returncode == 0, run.tail()
    assert mac.launchctl_changes() == [["launchctl", "bootstrap", f"gui/{TEST_UID}", str(plist_path(mac.home))]]


def test_a_proxy_that_never_answers_fails_the_play(tmp_path: Path):
    mac = FakeMac(tmp_path)
    mac.write_user_rc_files(".zshrc")
    mac.write_key_files()
    with HealthServer() as server:
        port = server.port
    # Nothing listens on `port` any more.
    run = mac.converge("-e", "litellm_service_start_timeout=2", port=port)
    assert run.returncode != 0
    assert "The proxy answers on loopback" in run.stdout and "FAILED" in run.stdout


def test_wrapper_refuses_to_start_without_the_env_file(darwin_home: ConvergedHome, tmp_path: Path):
    """No env file, no keys: the wrapper exits non-zero (launchd retries) instead of running keyless."""
    env_file = darwin_home.home / ".config" / "ccq" / "litellm.env"
    moved = tmp_path / "litellm.env"
    shutil.move(env_file, moved)
    try:
        proc = subprocess.run(["/bin/sh", str(wrapper_path(darwin_home.home))],
                              env={"PATH": os.defpath}, capture_output=True, text=True, timeout=30)
    finally:
        shutil.move(moved, env_file)
    assert proc.returncode != 0
