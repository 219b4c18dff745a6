"""The service side of doctor's facts: how the proxy runs, and the environment file and keys it runs with."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from ccq_doctor.gathering import fact
from ccq_doctor.machine import (
    Process,
    child_pids,
    find_litellm_processes,
    is_litellm,
    listeners,
    read_process,
    read_secret,
    read_text,
    socket_inodes,
)
from ccq_doctor.parsing import SECRET_ENV_NAMES, Listener, parse_env_file, shell_code
from ccq_doctor.service_managers import ServiceManager, ServiceState, service_manager
from ccq_doctor.settings import Settings


class ServiceFacts:
    """How the proxy runs: what keeps it up, its launcher, its process, sockets and log."""

    def __init__(self, settings: Settings, environ: dict[str, str], proc: Path) -> None:
        self.settings = settings
        self.environ = environ  # Facts' own dict: a change to it reaches the service manager
        self.proc = proc

    @fact
    def manager(self) -> ServiceManager:
        return service_manager(self.settings, self.environ)

    @fact
    def launcher(self) -> str:
        """The launcher script's code (comments left out, continued lines joined); "" when it is missing."""
        return shell_code(re.sub(r"\\\n", " ", read_text(self.settings.paths["proxy_launcher"]) or ""))

    def launcher_as_provisioned(self) -> bool:
        """Whether the launcher still runs the litellm command line doctor.json names (missing: no);
        runs of blanks count as one, as the shell splits words."""
        return shlex.join(self.settings.launcher_argv) in " ".join(self.launcher.split())

    @fact
    def service(self) -> ServiceState:
        return self.manager.read_state()

    @fact
    def proxy_process(self) -> Process | None:
        pid = self.manager.proxy_pid(self.service)
        process = read_process(pid, self.proc) if pid else None
        if process and is_litellm(process):
            return process
        if not self.manager.may_search_for_the_proxy(self.service):
            return None
        found = find_litellm_processes(self.settings.paths["proxy_config"], self.proc)
        return found[0] if found else None

    @fact
    def proxy_listeners(self) -> list[Listener]:
        process = self.proxy_process
        if process is None:
            return []
        inodes = socket_inodes(child_pids(process.pid, self.proc), self.proc)
        return [entry for entry in self.listeners if entry.inode in inodes]

    @fact
    def listeners(self) -> list[Listener]:
        return listeners(self.proc)

    @fact
    def journal(self) -> list[str] | None:
        """The proxy's recent journal lines, None when there is no journal to read."""
        return self.manager.journal()

    @fact
    def log_tail(self) -> list[str]:
        """The end of the log file the proxy's output goes to."""
        text = read_text(self.manager.log_file, limit=65536)
        return text.splitlines() if text else []

    @fact
    def service_environment(self) -> Mapping[str, str]:
        """The environment the proxy inherits, besides the environment file its launcher sources."""
        return self.manager.service_environment()


class SecretFacts:
    """The proxy's environment file and keys: read into memory only."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @fact
    def env_file(self) -> dict[str, str] | None:
        text = read_text(self.settings.paths["proxy_env_file"])
        return parse_env_file(text) if text is not None else None

    @fact
    def master_key(self) -> str:
        return read_secret(self.settings.paths["master_key_file"])

    @fact
    def api_key(self) -> str:
        env_file = self.env_file or {}
        return env_file.get("CEREBRAS_API_KEY") or read_secret(self.settings.paths["api_key_file"])

    def secrets(self) -> list[str]:
        env_file = self.env_file or {}
        return [self.master_key, read_secret(self.settings.paths["api_key_file"]),
                *(env_file.get(name, "") for name in SECRET_ENV_NAMES)]
