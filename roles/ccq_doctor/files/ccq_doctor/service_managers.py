"""The service manager: what keeps the proxy up, and what that changes for the checks."""

from __future__ import annotations

import os
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ccq_doctor.findings import FAIL, OK, WARN, Finding, reprovision
from ccq_doctor.machine import read_text, run
from ccq_doctor.parsing import (
    exec_start_argv,
    format_duration,
    last_error_lines,
    last_start,
    parse_env_file,
    parse_launchctl_print,
    parse_systemctl_show,
    unit_exec_start,
)
from ccq_doctor.settings import Settings

if TYPE_CHECKING:
    from ccq_doctor.facts import Facts

@dataclass
class ServiceState:
    """What the service manager says about the proxy's service (each manager fills its fields)."""

    loaded: bool = False
    enabled: str = ""  # systemd's UnitFileState; for launchd, the domain the agent is in
    active: str = ""
    sub: str = ""
    result: str = ""
    n_restarts: int = 0
    main_pid: int = 0
    exec_start: list[str] = field(default_factory=list)  # as loaded by systemd
    unit_file_exec_start: list[str] = field(default_factory=list)  # as on disk
    need_reload: bool = False
    linger: bool | None = None
    pidfile_pid: int = 0
    error: str = ""


class ServiceManager(ABC):
    """One class per way the proxy is kept up, picked once from the settings (service_manager);
    the checks ask it rather than branch on its name. The defaults are for a manager without a
    unit file or journal that doctor reads."""

    name: str  # the settings' service_manager

    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.environ = environ

    @abstractmethod
    def read_state(self) -> ServiceState:
        """What the manager says about the proxy's service now."""

    @abstractmethod
    def service_finding(self, facts: Facts) -> Finding:
        """The service check's verdict."""

    @abstractmethod
    def restart_command(self, state: ServiceState) -> str:
        """The command that restarts the proxy."""

    @property
    @abstractmethod
    def description(self) -> str:
        """How the proxy is kept up, in a few words (`ccq status`)."""

    @property
    def log_file(self) -> Path:
        """The file the proxy's output goes to."""
        return self.settings.paths["proxy_log"]

    @property
    def log_location(self) -> str:
        """Where to read the proxy's output (`ccq status`)."""
        return str(self.log_file)

    def proxy_pid(self, state: ServiceState) -> int:
        """The pid the manager gives for the proxy (0: none)."""
        return state.main_pid

    def may_search_for_the_proxy(self, state: ServiceState) -> bool:
        """Whether a LiteLLM process found by its config counts as the proxy when the manager's
        pid is not a LiteLLM process."""
        return True

    def unit_command(self, state: ServiceState) -> list[str]:
        """The command line the manager's unit runs; [] without a unit file doctor reads."""
        return []

    def unit_files(self) -> list[Path]:
        """The manager's files the running proxy was started from."""
        return []

    def journal(self) -> list[str] | None:
        """The proxy's recent journal lines, None when there is no journal to read."""
        return None

    def service_environment(self) -> Mapping[str, str]:
        """The environment the proxy inherits besides its environment file: this process's, as
        ccq's on-demand start passes the shell's on."""
        return self.environ

    def error_lines(self, facts: Facts) -> list[str]:
        """The proxy's last error lines."""
        return last_error_lines(facts.log_tail)

    def not_running(self, message: str) -> Finding:
        """The port check's verdict when nothing listens and no proxy runs."""
        return Finding(WARN, message, "run ccq (it starts the proxy)")

    def show_journal(self, lines: int, follow: bool, out: Callable[[str], None]) -> bool:
        """Print the journal's last ``lines`` lines (``follow``: and then new ones); False when
        there is none, so `ccq logs` shows the log file."""
        return False


class Systemd(ServiceManager):
    """A systemd user unit keeps the proxy up (Debian, Ubuntu; WSL with systemd)."""

    name = "systemd"

    @property
    def description(self) -> str:
        return f"systemd {self.settings.unit}"

    @property
    def log_location(self) -> str:
        return f"journalctl --user -u {self.settings.unit}"

    def _systemctl(self, verb: str) -> str:
        return f"systemctl --user {verb} {self.settings.unit}"

    def _environment(self) -> dict[str, str]:
        """The environment for systemctl and journalctl."""
        env = dict(self.environ)
        runtime = Path(f"/run/user/{os.getuid()}")
        if not env.get("XDG_RUNTIME_DIR") and runtime.is_dir():
            # `systemctl --user` from sudo/ssh without a session: "Failed to connect to bus".
            env["XDG_RUNTIME_DIR"] = str(runtime)
        return env

    def _journalctl(self, lines: int, output: str) -> list[str]:
        return ["journalctl", "--user", "-u", self.settings.unit, "-n", str(lines), "--no-pager", "-o", output]

    def read_state(self) -> ServiceState:
        settings = self.settings
        state = ServiceState()
        props = "LoadState,UnitFileState,ActiveState,SubState,Result,NRestarts,MainPID,ExecStart,NeedDaemonReload"
        shown = run(["systemctl", "--user", "show", settings.unit, "-p", props], env=self._environment())
        if shown.returncode != 0:
            state.error = (shown.stderr.strip().splitlines() or ["systemctl --user failed"])[-1]
            return state
        values = parse_systemctl_show(shown.stdout)
        state.loaded = values.get("LoadState") == "loaded"
        state.enabled = values.get("UnitFileState", "")
        state.active = values.get("ActiveState", "")
        state.sub = values.get("SubState", "")
        state.result = values.get("Result", "")
        state.n_restarts = int(values.get("NRestarts") or 0)
        state.main_pid = int(values.get("MainPID") or 0)
        state.exec_start = exec_start_argv(values.get("ExecStart", ""))
        state.need_reload = values.get("NeedDaemonReload") == "yes"
        unit_text = read_text(settings.unit_path)
        state.unit_file_exec_start = unit_exec_start(unit_text) if unit_text else []
        linger_dir = Path("/var/lib/systemd/linger")
        state.linger = (linger_dir / settings.user).exists() if linger_dir.is_dir() else None
        return state

    def may_search_for_the_proxy(self, state: ServiceState) -> bool:
        # An active unit names its process: another LiteLLM on ccq's config is not the one it keeps up.
        return state.active != "active"

    def unit_command(self, state: ServiceState) -> list[str]:
        return state.unit_file_exec_start or state.exec_start

    def unit_files(self) -> list[Path]:
        return [self.settings.unit_path]

    def journal(self) -> list[str] | None:
        done = run(self._journalctl(300, "cat"), env=self._environment())
        if done.returncode != 0 or "No journal files" in done.stderr:
            return None
        return done.stdout.splitlines()

    def service_environment(self) -> Mapping[str, str]:
        """The user manager's environment: the service does not see the login shell's."""
        done = run(["systemctl", "--user", "show-environment"], env=self._environment())
        return parse_env_file(done.stdout) if done.returncode == 0 else {}

    def error_lines(self, facts: Facts) -> list[str]:
        lines = facts.journal
        return last_error_lines(facts.log_tail if lines is None else lines)

    def restart_command(self, state: ServiceState) -> str:
        # After StartLimitBurst failures systemd refuses even a manual start until reset.
        if state.active == "failed":
            return self._reset_and_restart()
        return self._systemctl("restart")

    def _reset_and_restart(self) -> str:
        return f"{self._systemctl('reset-failed')} && {self._systemctl('restart')}"

    def not_running(self, message: str) -> Finding:
        return Finding(FAIL, message, self._systemctl("start"))

    def service_finding(self, facts: Facts) -> Finding:
        service = facts.service
        settings = self.settings
        process = facts.proxy_process
        if service.error:
            return Finding(FAIL, f"systemctl --user does not answer: {service.error}",
                           f"log in as {settings.user} (or export XDG_RUNTIME_DIR=/run/user/{os.getuid()}) and retry")
        if not service.loaded:
            return Finding(FAIL, f"{settings.unit} is not installed ({settings.unit_path} missing)",
                           reprovision(facts, "it installs and starts the user unit"))
        errors = self.error_lines(facts)
        # Between crashes a Type=simple unit shows active/running for the seconds LiteLLM takes
        # to fail its imports; restarts that never reach a healthy proxy are the loop.
        restarting_unhealthy = service.active == "active" and service.n_restarts >= 1 and not facts.health.ok
        if service.active in ("failed", "activating") or service.sub == "auto-restart" or restarting_unhealthy:
            return Finding(FAIL, f"{settings.unit} is crash-looping ({service.active}/{service.sub}, "
                                 f"{service.n_restarts} restarts, result {service.result}); its last error lines:",
                           f"fix the error below, then: {self._reset_and_restart()}", errors)
        if service.active != "active":
            return Finding(FAIL, f"{settings.unit} is stopped ({service.active}/{service.sub})",
                           self._systemctl("start"), errors if service.result != "success" else [])
        if service.enabled != "enabled":
            return Finding(FAIL, f"{settings.unit} runs but is {service.enabled or 'not enabled'}: "
                                 "it will not start at boot",
                           self._systemctl("enable"))
        uptime = f", up {format_duration(process.uptime)}" if process else ""
        running = f"{settings.unit} is enabled and running (pid {service.main_pid}{uptime})"
        if service.n_restarts >= 3:
            return Finding(WARN, f"{running}, but systemd restarted it {service.n_restarts} times; last error lines:",
                           f"journalctl --user -u {settings.unit} -n 100", errors)
        if service.linger is False:
            return Finding(WARN, f"{running}, but lingering is off: it stops when {settings.user} logs out",
                           f"sudo loginctl enable-linger {settings.user}")
        return Finding(OK, running)

    def show_journal(self, lines: int, follow: bool, out: Callable[[str], None]) -> bool:
        argv = self._journalctl(lines, "short-iso")
        if follow:
            proc = subprocess.Popen(argv + ["-f"], env=self._environment(), stdout=subprocess.PIPE, text=True)
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    out(line.rstrip("\n"))
            except KeyboardInterrupt:
                proc.terminate()
            return True
        done = run(argv, env=self._environment(), timeout=30)
        if done.returncode == 0 and "No journal files" not in done.stderr:
            for line in done.stdout.splitlines():
                out(line)
            return True
        out(f"(the journal cannot be read: {done.stderr.strip()}; showing {self.log_file})")
        return False


class Launchd(ServiceManager):
    """A launch agent keeps the proxy up (macOS). Untested here (no macOS): issue 6's macOS CI job runs it."""

    name = "launchd"

    @property
    def description(self) -> str:
        return f"launchd {self.settings.service_name}"

    @property
    def log_file(self) -> Path:
        return self.settings.paths["launchd_log"]

    def read_state(self) -> ServiceState:
        """The launch agent as `launchctl print` shows it (GUI session first, then the user domain)."""
        state = ServiceState()
        for domain in (f"gui/{os.getuid()}", f"user/{os.getuid()}"):
            done = run(["launchctl", "print", f"{domain}/{self.settings.service_name}"], env=self.environ)
            if done.returncode == 0:
                values = parse_launchctl_print(done.stdout)
                state.loaded = True
                state.enabled = domain
                state.active = values.get("state", "")
                state.main_pid = int(values.get("pid", "0") or 0)
                state.result = values.get("last exit code", "")
                return state
        return state

    def restart_command(self, state: ServiceState) -> str:
        return f"launchctl kickstart -k {state.enabled or 'gui/$(id -u)'}/{self.settings.service_name}"

    def service_finding(self, facts: Facts) -> Finding:
        service = facts.service
        process = facts.proxy_process
        settings = self.settings
        plist = settings.home / "Library/LaunchAgents" / f"{settings.service_name}.plist"
        if not service.loaded:
            return Finding(FAIL, f"the launch agent {settings.service_name} is not loaded",
                           f"launchctl bootstrap gui/$(id -u) {plist}")
        if service.active != "running" or not service.main_pid:
            return Finding(FAIL, f"the launch agent {settings.service_name} is {service.active or 'not running'} "
                                 f"(last exit code {service.result or '?'}); its last error lines:",
                           self.restart_command(service), self.error_lines(facts))
        # No /proc on macOS: the pid is launchd's word, the uptime unknown.
        uptime = f", up {format_duration(process.uptime)}" if process else ""
        return Finding(OK, f"launch agent {settings.service_name} is running (pid {service.main_pid}{uptime})")


class OnDemand(ServiceManager):
    """No service manager (containers, WSL without systemd): ccq starts the proxy when it is
    down, in the background, with a pidfile and a log file."""

    name = "none"

    @property
    def description(self) -> str:
        return "on demand, no systemd"

    def read_state(self) -> ServiceState:
        state = ServiceState()
        text = read_text(self.settings.paths["proxy_pidfile"])
        if text and text.strip().isdigit():
            state.pidfile_pid = int(text.strip())
        return state

    def proxy_pid(self, state: ServiceState) -> int:
        return state.pidfile_pid

    def restart_command(self, state: ServiceState) -> str:
        return f"kill $(cat {self.settings.paths['proxy_pidfile']})  # ccq starts it again on its next call"

    def service_finding(self, facts: Facts) -> Finding:
        settings = self.settings
        process = facts.proxy_process
        if process:
            return Finding(OK, f"running on demand (no systemd here): pid {process.pid}, "
                               f"up {format_duration(process.uptime)}")
        start_lines, served = last_start(facts.log_tail)
        errors = last_error_lines(start_lines)
        if errors and not served:
            return Finding(FAIL, f"not running, and its last start failed (log {settings.paths['proxy_log']})",
                           "fix the error below, then run ccq again (it starts the proxy and waits for it)", errors)
        return Finding(WARN, f"not running (no systemd here: ccq starts it on its next call; pidfile "
                             f"{settings.paths['proxy_pidfile']})")


SERVICE_MANAGERS: dict[str, type[ServiceManager]] = {manager.name: manager for manager in (Systemd, Launchd, OnDemand)}


def service_manager(settings: Settings, environ: Mapping[str, str]) -> ServiceManager:
    """The manager doctor.json names (roles/litellm_service decided it for this host)."""
    return SERVICE_MANAGERS[settings.service_manager](settings, environ)
