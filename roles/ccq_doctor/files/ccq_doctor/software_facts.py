"""The installed software side of doctor's facts: LiteLLM's venv and the callback it imports,
Claude Code and Node.js."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from ccq_doctor.gathering import fact
from ccq_doctor.machine import run
from ccq_doctor.parsing import SECRET_ENV_NAMES
from ccq_doctor.proxy_facts import ProxyConfigFacts
from ccq_doctor.service_facts import SecretFacts
from ccq_doctor.settings import Settings


def site_packages(venv: Path) -> Path | None:
    """The venv's site-packages directory."""
    found = sorted(venv.glob("lib/python3*/site-packages"))
    return found[-1] if found else None


def venv_versions(venv: Path, names: Iterable[str]) -> dict[str, str]:
    """Installed versions in a venv, read from its dist-info metadata (no import, no pip)."""
    packages = site_packages(venv)
    if packages is None:
        return {}
    wanted = {n.lower().replace("_", "-") for n in names}
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions(path=[str(packages)]):
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name in wanted and name not in found:
            found[name] = dist.version
    return found


# Loads the callback the way LiteLLM's proxy does (spec_from_file_location beside config.yaml)
# and checks that every attribute the config names exists.
_IMPORT_PROBE = """
import importlib.util, sys
path, attributes = sys.argv[1], sys.argv[2:]
spec = importlib.util.spec_from_file_location("custom_callbacks", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
missing = [a for a in attributes if not hasattr(module, a)]
if missing:
    sys.exit("missing attribute(s): " + ", ".join(missing))
"""


class SoftwareFacts:
    """What is installed: the versions in LiteLLM's venv, whether the callback imports there, and
    the versions of Claude Code and Node.js."""

    def __init__(self, settings: Settings, environ: dict[str, str], secrets: SecretFacts,
                 config: ProxyConfigFacts) -> None:
        self.settings = settings
        self.environ = environ
        self.secrets = secrets
        self.config = config
        self._callback_probe: subprocess.Popen[str] | None = None

    # -- LiteLLM's venv ---------------------------------------------------------------------
    @fact
    def versions(self) -> dict[str, str]:
        return venv_versions(self.settings.paths["litellm_venv"], ["litellm", "openai"])

    def start_callback_probe(self) -> None:
        """Start importing the callback in LiteLLM's venv now: it takes seconds (LiteLLM's import)."""
        config = self.config.proxy_config
        python = self.settings.paths["litellm_venv"] / "bin" / "python"
        callback_file = self.settings.paths["proxy_callbacks"]
        if self._callback_probe or not python.exists() or not callback_file.exists():
            return
        attributes = [c.split(".", 1)[1] for c in (config.callbacks if config else [])
                      if c.startswith("custom_callbacks.")] or ["proxy_handler_instance"]
        env = {k: v for k, v in (self.secrets.env_file or {}).items() if k not in SECRET_ENV_NAMES}
        env.update({"PATH": self.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.settings.home),
                    "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
        self._callback_probe = subprocess.Popen(
            [str(python), "-c", _IMPORT_PROBE, str(callback_file), *attributes],
            cwd=self.settings.paths["config_dir"], env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    @fact
    def callback_import(self) -> str | None:
        """None when the callback imports; else the error's last line."""
        self.start_callback_probe()
        if self._callback_probe is None:
            return "LiteLLM's venv or custom_callbacks.py is missing"
        try:
            _, err = self._callback_probe.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            self._callback_probe.kill()
            return "importing it took more than 120 s"
        if self._callback_probe.returncode == 0:
            return None
        lines = [line for line in err.strip().splitlines() if line.strip()]
        return lines[-1] if lines else f"exit status {self._callback_probe.returncode}"

    # -- Claude Code ------------------------------------------------------------------------
    @fact
    def claude_version(self) -> str | None:
        claude = self.settings.paths["bin_dir"] / "claude"
        found = str(claude) if claude.exists() else shutil.which("claude", path=self.environ.get("PATH"))
        if not found:
            return None
        env = dict(self.environ, DISABLE_AUTOUPDATER="1")
        done = run([found, "--version"], env=env, timeout=30)
        match = re.match(r"\s*(\d+\.\d+\.\d+\S*)", done.stdout)
        return match.group(1) if done.returncode == 0 and match else ""

    @fact
    def node_version(self) -> str | None:
        done = run(["node", "--version"], env=self.environ, timeout=10)
        return done.stdout.strip() if done.returncode == 0 else None
