"""What ccq does: the environment and arguments the user's ccq shell function gives Claude Code."""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import sys
import tempfile
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ccq_doctor.gathering import fact
from ccq_doctor.machine import run
from ccq_doctor.parsing import CAPTURED_VARS, NO_SHELL_FUNCTION, option_value
from ccq_doctor.settings import Settings


@dataclass
class Capture:
    """The environment and arguments the ccq shell function gives Claude Code."""

    ok: bool
    source: str  # "bash (~/.bashrc)", "zsh (~/.zshrc)" or "ccq.sh"
    env: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)
    token_fingerprint: str | None = None
    anthropic_api_key_set: bool = False
    error: str = ""

    @property
    def alias(self) -> str | None:
        return option_value(self.argv, "--model") or self.env.get("ANTHROPIC_MODEL")

    @property
    def port(self) -> int | None:
        url = self.env.get("ANTHROPIC_BASE_URL")
        try:
            return urllib.parse.urlsplit(url).port if url else None
        except ValueError:
            return None


_FAKE_CLAUDE = """#!{python}
# Stand-in for claude, run by ccq inside `ccq doctor`: records what ccq would give Claude Code.
import hashlib, json, os, sys
token = os.environ.get("ANTHROPIC_AUTH_TOKEN")
record = {{
    "argv": sys.argv[1:],
    "env": {{n: os.environ[n] for n in {names!r} if n in os.environ}},
    "token_fingerprint": hashlib.sha256(token.encode()).hexdigest() if token else None,
    "anthropic_api_key_set": bool(os.environ.get("ANTHROPIC_API_KEY")),
}}
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "capture.json"), "w") as fh:
    json.dump(record, fh)
"""

# Run in the user's shell after its rc file: ccq must neither start the proxy nor run the
# real claude; --version keeps even an unexpected real claude harmless.
_CAPTURE_SCRIPT = f"""
_ccq_proxy_healthy() {{ return 0; }}
_ccq_proxy_start() {{ return 0; }}
PATH="$CCQ_DOCTOR_FAKE_DIR:$PATH"
if typeset -f ccq >/dev/null 2>&1; then ccq --version; else exit {NO_SHELL_FUNCTION:d}; fi
"""


def user_shell(environ: Mapping[str, str]) -> str:
    """bash or zsh: the shell whose rc file the user's ccq comes from."""
    shell = environ.get("SHELL") or pwd.getpwuid(os.getuid()).pw_shell
    name = Path(shell).name
    return name if name in ("bash", "zsh") and shutil.which(name) else "bash"


def capture_ccq(settings: Settings, environ: Mapping[str, str], interactive: bool = True) -> Capture:
    """Run the user's ccq with a stand-in claude and record what it would hand Claude Code.

    interactive: a new interactive bash/zsh, so the rc files decide which ccq runs (the ccq() of
    the Japanese blog recipe ccq started from, further down ~/.zshrc, overrides ccq's own).
    Otherwise ccq.sh alone.
    """
    shell = user_shell(environ) if interactive else "bash"
    rc_name = "~/.zshrc" if shell == "zsh" else "~/.bashrc"
    source = f"{shell} ({rc_name})" if interactive else "ccq.sh"
    with tempfile.TemporaryDirectory(prefix="ccq-doctor-") as tmp:  # 0700: the stand-in is private
        fake = Path(tmp) / "claude"
        names = CAPTURED_VARS + tuple(sorted(settings.claude_code_environment))
        fake.write_text(_FAKE_CLAUDE.format(python=sys.executable, names=names))
        fake.chmod(0o700)
        env = dict(environ)
        env["CCQ_DOCTOR_FAKE_DIR"] = tmp
        if interactive:
            argv = [shell, "-i", "-c", _CAPTURE_SCRIPT]
        else:
            script = f". {shlex.quote(str(settings.paths['shell_functions']))}\n{_CAPTURE_SCRIPT}"
            argv = ["bash", "--noprofile", "--norc", "-c", script]
        done = run(argv, env=env, timeout=30, cwd=settings.home)
        record_path = Path(tmp) / "capture.json"
        if done.returncode == NO_SHELL_FUNCTION:
            return Capture(False, source, error=f"a new {shell} does not define ccq")
        if not record_path.exists():
            tail = " ".join(done.stderr.strip().splitlines()[-2:])
            return Capture(False, source,
                           error=f"ccq did not run claude from PATH (exit {done.returncode}) {tail}".strip())
        record = json.loads(record_path.read_text())
    return Capture(True, source, env=record["env"], argv=record["argv"],
                   token_fingerprint=record["token_fingerprint"],
                   anthropic_api_key_set=record["anthropic_api_key_set"])


class CcqFacts:
    """What ccq does: the port and alias it points Claude Code at."""

    def __init__(self, settings: Settings, environ: dict[str, str]) -> None:
        self.settings = settings
        self.environ = environ

    @fact
    def capture(self) -> Capture:
        return capture_ccq(self.settings, self.environ, interactive=True)

    @fact
    def capture_direct(self) -> Capture:
        return capture_ccq(self.settings, self.environ, interactive=False)

    def usable_capture(self) -> Capture:
        """The user's shell's ccq, else ccq.sh alone (so the other checks still run)."""
        return self.capture if self.capture.ok else self.capture_direct

    def ccq_port(self) -> int:
        capture = self.usable_capture()
        return capture.port or self.settings.port

    def ccq_alias(self) -> str:
        return self.usable_capture().alias or self.settings.model_alias
