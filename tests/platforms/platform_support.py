"""Helpers for the platform tests: macOS paths run on Linux, shells, rendered files.

The Darwin task files run through real ansible-playbook runs against this machine with
connection local, as the account running the tests and without become. Two things are
faked, nothing else:

* the OS identity: ``tests/platforms/library/ccq_fake_darwin_facts.py`` runs after
  ``ansible.builtin.setup`` and reports os_family Darwin;
* the macOS tools the Darwin tasks call (brew, launchctl, security, dscacheutil, plutil):
  ``tests/platforms/fake_macos/fake_macos_tool.py``, first on PATH, recording every call.

Every file lands in a scratch home under pytest's tmp dir; keys are sentinels.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
FAKE_TOOL = HERE / "fake_macos" / "fake_macos_tool.py"
CONVERGE = HERE / "playbooks" / "converge_user_files.yml"
MACOS_TOOLS = ("brew", "launchctl", "security", "dscacheutil", "plutil")
SENTINEL_API_KEY = "csk-sentinel-platforms-0000-not-a-real-key"
SENTINEL_MASTER_KEY = "sk-ccq-sentinelplatforms0000notarealkey00"
TEST_UID = 501
USER_RC_LINE = "export CCQ_TEST_USERS_OWN_LINE=1  # the user's own line"
RECAP = re.compile(r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


@dataclass
class PlaybookRun:
    """The outcome of one ansible-playbook run."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def changed(self) -> int:
        match = RECAP.search(self.stdout)
        assert match, f"no PLAY RECAP in output:\n{self.stdout[-3000:]}\n{self.stderr[-2000:]}"
        return int(match.group(2))

    def tail(self) -> str:
        return f"{self.stdout[-6000:]}\n--- stderr ---\n{self.stderr[-2000:]}"


@dataclass
class FakeMac:
    """A scratch home plus fake macOS tools; runs playbooks that see this host as Darwin."""

    root: Path
    gui_session: bool = False
    fake_darwin: bool = True
    node_version: str | None = None
    home: Path = field(init=False)
    bin_dir: Path = field(init=False)
    state_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.home = self.root / "home"
        self.bin_dir = self.root / "bin"
        self.state_dir = self.root / "state"
        for path in (self.home, self.bin_dir, self.state_dir):
            path.mkdir(parents=True, exist_ok=True)
        for tool in MACOS_TOOLS:
            write_executable(self.bin_dir / tool,
                             f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_TOOL}" {tool} "$@"\n')
        if self.node_version:
            # `node --version` reports an old Node.js (so the role asks Homebrew for one);
            # anything else, such as npm's own use of node, goes to the real node.
            real_node = shutil.which("node") or "/usr/bin/node"
            write_executable(self.bin_dir / "node", (
                '#!/bin/sh\n'
                f'if [ "$#" -eq 1 ] && [ "$1" = --version ]; then echo {self.node_version}; exit 0; fi\n'
                f'exec "{real_node}" "$@"\n'))

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("ANSIBLE_", "CEREBRAS_", "CCQ_FAKE_"))}
        env.update({
            "PATH": f"{self.bin_dir}:{env.get('PATH', '/usr/bin:/bin')}",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "CCQ_FAKE_MACOS_STATE": str(self.state_dir),
            "CCQ_FAKE_HOME": str(self.home),
            "CCQ_FAKE_UID": str(TEST_UID),
            "CCQ_FAKE_GUI": "1" if self.gui_session else "0",
            "CEREBRAS_API_KEY": SENTINEL_API_KEY,
        })
        if self.fake_darwin:
            env["ANSIBLE_LIBRARY"] = str(HERE / "library")
            env["ANSIBLE_FACTS_MODULES"] = "ansible.builtin.setup,ccq_fake_darwin_facts"
        return env

    def playbook(self, playbook: Path | str, *args: str, timeout: int = 600) -> PlaybookRun:
        """Run ansible-playbook from the repository (its ansible.cfg and inventory)."""
        extra = ["-e", "ansible_facts_parallel=false"] if self.fake_darwin else []
        proc = subprocess.run(
            [str(ANSIBLE_PLAYBOOK), str(playbook), *extra, *args],
            cwd=REPO, env=self.env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout,
        )
        return PlaybookRun(proc.returncode, proc.stdout, proc.stderr)

    def converge(self, *args: str, port: int) -> PlaybookRun:
        """The scratch-home converge of the shell files (and the launchd agent on Darwin)."""
        return self.playbook(CONVERGE, "-e", f"scratch_home={self.home}", "-e", f"test_port={port}",
                             "-e", f"test_uid={TEST_UID}", *args)

    def calls(self) -> list[list[str]]:
        """Every fake-tool call so far, oldest first."""
        log = self.state_dir / "calls.log"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

    def launchctl_changes(self) -> list[list[str]]:
        """The launchctl calls that change launchd's state (bootstrap, bootout)."""
        return [c for c in self.calls() if c[0] == "launchctl" and c[1] in ("bootstrap", "bootout")]

    def write_user_rc_files(self, *names: str) -> None:
        """rc files with a line of the user's own, as on a used machine."""
        for name in names:
            (self.home / name).write_text(USER_RC_LINE + "\n")

    def write_key_files(self) -> None:
        """The 0600 key and environment files litellm_proxy would have written."""
        secrets = self.home / ".secrets"
        config = self.home / ".config" / "ccq"
        for directory in (secrets, config):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for path, content in (
            (secrets / "cerebras_api_key", SENTINEL_API_KEY),
            (secrets / "ccq_litellm_master_key", SENTINEL_MASTER_KEY),
            (config / "litellm.env", f"CEREBRAS_API_KEY={SENTINEL_API_KEY}\n"
                                     f"LITELLM_MASTER_KEY={SENTINEL_MASTER_KEY}\n"
                                     "LITELLM_LOCAL_MODEL_COST_MAP=True\n"),
        ):
            path.write_text(content)
            path.chmod(0o600)


def write_executable(path: Path, content: str) -> None:
    path.write_text(content)
    path.chmod(0o755)


class HealthServer:
    """A loopback HTTP server that answers 200 on /health/liveliness, like a healthy proxy."""

    def __init__(self, port: int = 0) -> None:
        self.paths: list[str] = []
        paths = self.paths

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                paths.append(self.path)
                ok = self.path == "/health/liveliness"
                self.send_response(200 if ok else 404)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b'"I\'m alive!"' if ok else b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HealthServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class DarwinConverges:
    """One scratch Mac converged four times, with what each run did.

    1. fresh (an older ccq's start script aside), no GUI session (as over SSH)
                                                 -> the agent goes into user/<uid>
    2. the same again                            -> nothing changes
    3. a GUI session now, and another port       -> moved from user/<uid> to gui/<uid>
    4. another port again                        -> reloaded in gui/<uid> (bootout, bootstrap)
    Each run has its own stand-in proxy on its port, stopped afterwards: ``port`` (run 4's)
    is free again when the tests look at the files.
    """

    mac: FakeMac
    runs: list[PlaybookRun]
    calls: list[list[list[str]]]  # the fake-tool calls each run made
    health_requests: list[list[str]]  # what each run's stand-in proxy was asked
    port: int

    @property
    def home(self) -> Path:
        return self.mac.home

    def launchctl_changes(self, run: int) -> list[list[str]]:
        """The bootstrap/bootout calls of run ``run`` (1-based)."""
        return [c for c in self.calls[run - 1] if c[0] == "launchctl" and c[1] in ("bootstrap", "bootout")]


def converge_darwin_four_times(root: Path) -> DarwinConverges:
    """The sequence DarwinConverges describes; asserts that every run succeeds."""
    mac = FakeMac(root)
    # A Mac in use: the user's own rc files, and bash settings in ~/.profile.
    mac.write_user_rc_files(".zshrc", ".bashrc", ".profile")
    mac.write_key_files()
    # Provisioned by an older ccq: the agent's start script of before the launcher.
    write_executable(mac.home / ".config" / "ccq" / "litellm-launchd.sh", "#!/bin/sh\nexit 1\n")
    runs: list[PlaybookRun] = []
    calls: list[list[list[str]]] = []
    requests: list[list[str]] = []
    port = 0
    for gui_session, new_port in ((False, True), (False, False), (True, True), (True, True)):
        mac.gui_session = gui_session
        with HealthServer(0 if new_port else port) as server:
            port = server.port
            seen = len(mac.calls())
            run = mac.converge(port=port)
            assert run.returncode == 0, f"run {len(runs) + 1}:\n{run.tail()}"
            runs.append(run)
            calls.append(mac.calls()[seen:])
            requests.append(list(server.paths))
    return DarwinConverges(mac, runs, calls, requests, port)
