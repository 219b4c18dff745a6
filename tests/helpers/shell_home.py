"""A user's home laid out as the roles lay it out on a host without systemd, with the real parts.

The cc/ccq functions (roles/ccq_shell) in a marked block of ~/.bashrc, the proxy's launcher
(roles/litellm_service, rendered for a host without a service manager), the 0600 key files
and environment file, the config, callback and package as roles/litellm_proxy deploys them,
the pinned LiteLLM (the tests' venv from the lock, where the role's pipx venv would be) and the
pinned Claude Code on the PATH. Only Cerebras is a stand-in. What the shell tests and
`make bench`'s login figure start, kill and time.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .doctor_settings import ccq_layout
from .stack import (
    ENV_TEMPLATE,
    MODEL_ALIAS,
    REPO_ROOT,
    FakeUpstream,
    LiteLLMProxy,
    base_env,
    free_port,
    pick_callback,
    render_template,
    role_variables,
)

SHELL_TEMPLATE = REPO_ROOT / "roles/ccq_shell/templates/ccq.sh.j2"
LAUNCHER_TEMPLATE = REPO_ROOT / "roles/litellm_service/templates/ccq-proxy.sh.j2"
# The launcher's systemd unit name: none by this name runs, so its --start never touches a real ccq.
TEST_SERVICE_NAME = "ccq-shell-home-test"
# What -p needs offline, as ccq's model table would add it (tests/helpers/claude.py says why).
CLAUDE_CODE_ENVIRONMENT = {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
                           "DISABLE_ERROR_REPORTING": "1", "DISABLE_AUTOUPDATER": "1",
                           "CLAUDE_CODE_MAX_RETRIES": "1"}
START_MARKER = "ccq: starting the proxy"


def _write(path: Path, text: str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


@dataclass
class ShellHome:
    root: Path
    litellm_venv: Path
    claude: Path
    upstream: FakeUpstream
    start_with_shell: bool = True
    service_manager: str = "none"
    port: int = field(default_factory=free_port)
    master_key: str = field(default_factory=lambda: "sk-ccq-" + secrets.token_hex(20))

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def paths(self) -> dict[str, Path]:
        return {name: self.home / relative for name, relative in ccq_layout().items()}

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health/liveliness"

    def build(self) -> ShellHome:
        paths = self.paths
        for name in ("secrets_dir", "config_dir", "state_dir"):
            paths[name].mkdir(parents=True, exist_ok=True, mode=0o700)
        _write(paths["master_key_file"], self.master_key)
        # config.yaml, custom_callbacks.py and ccq_proxy.zip as roles/litellm_proxy deploys them.
        proxy = LiteLLMProxy(venv=self.litellm_venv, workdir=paths["config_dir"], upstream=self.upstream,
                             callback=pick_callback(), master_key=self.master_key)
        config = proxy.write_config()
        variables = role_variables(self.upstream.api_base, self.master_key, self.upstream.api_key,
                                   state_dir=paths["state_dir"], config_dir=paths["config_dir"])
        _write(paths["proxy_env_file"], render_template(ENV_TEMPLATE, **variables))
        shell_paths = {name: str(path) for name, path in paths.items()}
        _write(paths["proxy_launcher"], render_template(
            LAUNCHER_TEMPLATE, litellm_service_paths=shell_paths, litellm_service_port=self.port,
            litellm_service_litellm_argv=[str(self.litellm_venv / "bin/litellm"), "--config", str(config),
                                          "--host", "127.0.0.1", "--port", str(self.port), "--telemetry", "False"],
            litellm_service_launcher=str(paths["proxy_launcher"]), litellm_service_name=TEST_SERVICE_NAME,
            litellm_service_manager=self.service_manager, litellm_service_health_url=self.health_url), 0o700)
        _write(paths["shell_functions"], render_template(
            SHELL_TEMPLATE, ccq_shell_paths=shell_paths, ccq_shell_proxy_port=self.port,
            ccq_shell_model_alias=MODEL_ALIAS,
            ccq_shell_background_model_alias="", ccq_shell_start_timeout=60,
            ccq_shell_start_proxy_with_shell=self.start_with_shell,
            ccq_shell_claude_code_environment=CLAUDE_CODE_ENVIRONMENT, ccq_shell_claude_code_arguments=[]), 0o644)
        _write(self.home / ".bashrc", "# the user's own line\n# BEGIN ccq: cc and ccq\n"
               f'[ -r "{paths["shell_functions"]}" ] && . "{paths["shell_functions"]}"\n# END ccq: cc and ccq\n', 0o644)
        paths["bin_dir"].mkdir(parents=True, exist_ok=True)
        (paths["bin_dir"] / "claude").symlink_to(self.claude)
        return self

    def env(self) -> dict[str, str]:
        env = base_env()
        env.update(HOME=str(self.home), SHELL="/bin/bash", XDG_CONFIG_HOME=str(self.home / ".config"))
        return env

    def interactive_shell(self, commands: str = "true") -> subprocess.Popen[str]:
        """``bash -i -c COMMANDS``: an interactive shell reads ~/.bashrc, as a terminal's would."""
        return subprocess.Popen(["bash", "-i", "-c", commands], env=self.env(), cwd=self.home, text=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def shell(self, commands: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """A script's shell: it reads ~/.bashrc only because it is told to."""
        return subprocess.run(["bash", "-c", f". ~/.bashrc; {commands}"], env=self.env(), cwd=self.home,
                              text=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)

    def starts(self) -> int:
        """How many times the launcher started LiteLLM (its marker lines in the proxy log)."""
        log = self.paths["proxy_log"]
        return log.read_text(encoding="utf-8", errors="replace").count(START_MARKER) if log.exists() else 0

    def proxy_pid(self) -> int | None:
        pidfile = self.paths["proxy_pidfile"]
        text = pidfile.read_text().strip() if pidfile.exists() else ""
        return int(text) if text.isdigit() else None

    def proxy_processes(self) -> list[int]:
        """LiteLLM processes serving this home's config (whoever started them)."""
        config = str(self.paths["config_dir"] / "config.yaml")
        found = subprocess.run(["pgrep", "-f", "--", f"--config {config}"], capture_output=True, text=True, check=False)
        return [int(pid) for pid in found.stdout.split()]

    @property
    def start_lock(self) -> Path:
        """The launcher's start lock (its start_detached), which a running proxy holds."""
        return Path(str(self.paths["proxy_pidfile"]) + ".lock")

    def stop_proxies(self) -> None:
        """Every LiteLLM of this home, stopped; returns once the launcher's start lock is free.
        Not when pgrep stops finding the process, nor when its main thread is a zombie: an
        exiting process loses its command line first, and its other threads hold its files
        (the lock among them) until the last one has exited."""
        for pid in self.proxy_processes():
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while not self._start_lock_free():
            if time.monotonic() > deadline:
                for pid in self.proxy_processes():
                    os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 20
            time.sleep(0.05)

    def _start_lock_free(self) -> bool:
        if not self.start_lock.exists():
            return True
        with open(self.start_lock, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(lock, fcntl.LOCK_UN)
        return True
