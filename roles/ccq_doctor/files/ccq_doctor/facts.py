"""Facts: gathered once, lazily, shared by the checks."""

from __future__ import annotations

import importlib.metadata
import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ccq_doctor.machine import (
    HttpResult,
    Process,
    child_pids,
    find_litellm_processes,
    http_get,
    is_litellm,
    listeners,
    read_process,
    read_secret,
    read_text,
    run,
    socket_inodes,
)
from ccq_doctor.parsing import (
    CALLBACK_SETTING,
    CAPTURED_VARS,
    NO_SHELL_FUNCTION,
    SECRET_ENV_NAMES,
    Listener,
    option_value,
    parse_env_file,
    shell_code,
)
from ccq_doctor.service_managers import ServiceManager, ServiceState, service_manager
from ccq_doctor.settings import Settings


@dataclass
class ProxyConfig:
    """What doctor needs from LiteLLM's config.yaml."""

    models: dict[str, dict[str, str]] = field(default_factory=dict)  # model_name -> litellm_params
    callbacks: list[str] = field(default_factory=list)

    def upstream_model(self, alias: str) -> str:
        """The model id at the provider for ``alias`` ("cerebras/x" -> "x")."""
        model = self.models.get(alias, {}).get("model", "")
        return model.split("/", 1)[1] if "/" in model else model

    @classmethod
    def provisioned(cls, settings: Settings) -> ProxyConfig:
        """What roles/litellm_proxy wrote into config.yaml, from doctor.json: for when LiteLLM's
        venv cannot read the file (the versions check names that venv's fault)."""
        config = cls(callbacks=[CALLBACK_SETTING])
        for alias, model in ((settings.model_alias, settings.upstream_model),
                             (settings.background_model_alias, settings.background_model)):
            if alias:
                config.models[alias] = {"model": f"cerebras/{model}", "api_base": settings.api_base}
        return config


# The litellm_params doctor reads.
MODEL_PARAMS_READ = ("model", "api_base", "api_key")


def proxy_config_from_data(data: Any) -> ProxyConfig:
    """ProxyConfig from config.yaml already parsed into Python data (by LiteLLM's own YAML parser)."""
    config = ProxyConfig()
    if not isinstance(data, dict):
        return config
    for entry in data.get("model_list") or []:
        if isinstance(entry, dict) and entry.get("model_name") is not None:
            params = entry.get("litellm_params") or {}
            config.models[str(entry["model_name"])] = {k: str(v) for k, v in params.items()
                                                       if k in MODEL_PARAMS_READ}
    callbacks = (data.get("litellm_settings") or {}).get("callbacks")
    if isinstance(callbacks, str):
        config.callbacks = [callbacks]
    elif isinstance(callbacks, list):
        config.callbacks = [str(c) for c in callbacks]
    return config



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


@dataclass
class Upstream:
    """What GET {api_base}/models answered."""

    url: str
    result: HttpResult
    served: list[str] = field(default_factory=list)


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


class Facts:
    """Everything the checks look at.

    Each fact is a cached property: gathered on first use (``ccq doctor <check>`` gathers only
    what its checks need) and at most once. A fact that raises is not cached: every check that
    uses it fails with the error (run_checks) and the other checks still run. The methods
    derive answers from the facts.
    """

    def __init__(self, settings: Settings, environ: Mapping[str, str] = os.environ,
                 proc: Path = Path("/proc")) -> None:
        self.settings = settings
        self.environ = dict(environ)
        self.proc = proc
        self._callback_probe: subprocess.Popen[str] | None = None

    def preset(self, **facts: Any) -> Facts:
        """Fix facts in advance (tests; or a caller that knows them already)."""
        for name, value in facts.items():
            if not isinstance(getattr(type(self), name, None), cached_property):
                raise TypeError(f"{name!r} is not a fact (a cached property of {type(self).__name__})")
            # Where cached_property keeps a computed value, so it is never computed.
            self.__dict__[name] = value
        return self

    # -- how the proxy runs ----------------------------------------------------------------
    @cached_property
    def manager(self) -> ServiceManager:
        return service_manager(self.settings, self.environ)

    @cached_property
    def launcher(self) -> str:
        """The launcher script's code (comments left out, continued lines joined); "" when it is missing."""
        return shell_code(re.sub(r"\\\n", " ", read_text(self.settings.paths["proxy_launcher"]) or ""))

    def launcher_as_provisioned(self) -> bool:
        """Whether the launcher still runs the litellm command line doctor.json names (missing: no);
        runs of blanks count as one, as the shell splits words."""
        return shlex.join(self.settings.launcher_argv) in " ".join(self.launcher.split())

    # -- secrets (memory only) -----------------------------------------------------------
    @cached_property
    def env_file(self) -> dict[str, str] | None:
        text = read_text(self.settings.paths["proxy_env_file"])
        return parse_env_file(text) if text is not None else None

    @cached_property
    def master_key(self) -> str:
        return read_secret(self.settings.paths["master_key_file"])

    @cached_property
    def api_key(self) -> str:
        env_file = self.env_file or {}
        return env_file.get("CEREBRAS_API_KEY") or read_secret(self.settings.paths["api_key_file"])

    def secrets(self) -> list[str]:
        env_file = self.env_file or {}
        return [self.master_key, read_secret(self.settings.paths["api_key_file"]),
                *(env_file.get(name, "") for name in SECRET_ENV_NAMES)]

    # -- the service -----------------------------------------------------------------------
    @cached_property
    def service(self) -> ServiceState:
        return self.manager.read_state()

    @cached_property
    def proxy_process(self) -> Process | None:
        pid = self.manager.proxy_pid(self.service)
        process = read_process(pid, self.proc) if pid else None
        if process and is_litellm(process):
            return process
        if not self.manager.may_search_for_the_proxy(self.service):
            return None
        found = find_litellm_processes(self.settings.paths["proxy_config"], self.proc)
        return found[0] if found else None

    @cached_property
    def proxy_listeners(self) -> list[Listener]:
        process = self.proxy_process
        if process is None:
            return []
        inodes = socket_inodes(child_pids(process.pid, self.proc), self.proc)
        return [entry for entry in self.listeners if entry.inode in inodes]

    @cached_property
    def listeners(self) -> list[Listener]:
        return listeners(self.proc)

    @cached_property
    def journal(self) -> list[str] | None:
        """The proxy's recent journal lines, None when there is no journal to read."""
        return self.manager.journal()

    @cached_property
    def log_tail(self) -> list[str]:
        """The end of the log file the proxy's output goes to."""
        text = read_text(self.manager.log_file, limit=65536)
        return text.splitlines() if text else []

    # -- what ccq does --------------------------------------------------------------------
    @cached_property
    def capture(self) -> Capture:
        return capture_ccq(self.settings, self.environ, interactive=True)

    @cached_property
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

    # -- the proxy over HTTP ----------------------------------------------------------------
    def proxy_url(self, path: str) -> str:
        """``path`` at the proxy: where doctor.json's health URL (the launcher's) points."""
        parts = urllib.parse.urlsplit(self.settings.health_url)
        return f"{parts.scheme}://{parts.netloc}{path}"

    def provisioned_port(self) -> int | None:
        """The port of doctor.json's health URL: where the provisioning runs the proxy."""
        try:
            return urllib.parse.urlsplit(self.settings.health_url).port
        except ValueError:
            return None

    @cached_property
    def health(self) -> HttpResult:
        return http_get(self.settings.health_url, timeout=3)

    @cached_property
    def proxy_models(self) -> HttpResult:
        key = self.master_key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return http_get(self.proxy_url("/v1/models"), headers=headers, timeout=10)

    @cached_property
    def readiness(self) -> HttpResult:
        """LiteLLM's /health/readiness: its version and the callbacks it actually loaded."""
        key = self.master_key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return http_get(self.proxy_url("/health/readiness"), headers=headers, timeout=10)

    def loaded_callbacks(self) -> list[str] | None:
        """Class names of the callbacks the running proxy loaded; None when it cannot be asked."""
        if not self.health.ok:
            return None
        data = self.readiness.json() if self.readiness.ok else None
        if not isinstance(data, dict) or not isinstance(data.get("success_callbacks"), list):
            return None
        return [str(name) for name in data["success_callbacks"]]

    @cached_property
    def callback_classes(self) -> dict[str, str]:
        """For each configured ``custom_callbacks.<name>``: the class the file instantiates as <name>."""
        config = self.proxy_config
        source = read_text(self.settings.paths["proxy_callbacks"]) or ""
        classes = {}
        for setting in (config.callbacks if config else []):
            module, _, name = setting.partition(".")
            if module != "custom_callbacks":
                continue
            match = re.search(rf"(?m)^{re.escape(name)}\s*=\s*([A-Za-z_]\w*)\(", source)
            classes[setting] = match.group(1) if match else ""
        return classes

    # -- config.yaml -----------------------------------------------------------------------
    @cached_property
    def proxy_config(self) -> ProxyConfig | None:
        """config.yaml as LiteLLM itself reads it: its venv's YAML parser hands it over as JSON.
        None when the file is missing; what doctor.json says the role wrote when the venv cannot
        read it."""
        path = self.settings.paths["proxy_config"]
        if not path.exists():
            return None
        python = self.settings.paths["litellm_venv"] / "bin" / "python"
        if python.exists():
            done = run([str(python), "-c", "import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
                        str(path)], timeout=30)
            if done.returncode == 0:
                try:
                    return proxy_config_from_data(json.loads(done.stdout))
                except ValueError:
                    pass
        return ProxyConfig.provisioned(self.settings)

    def upstream_model(self) -> str:
        config = self.proxy_config
        return (config.upstream_model(self.ccq_alias()) if config else "") or self.settings.upstream_model

    def background_alias(self) -> str:
        """The alias of Claude Code's background calls when ccq_background_model is set, else ""."""
        alias = self.settings.background_model_alias
        return alias if alias and alias != self.ccq_alias() else ""

    def background_upstream_model(self) -> str:
        alias = self.background_alias()
        if not alias:
            return ""
        config = self.proxy_config
        return (config.upstream_model(alias) if config else "") or self.settings.background_model

    def api_base(self) -> str:
        config = self.proxy_config
        base = config.models.get(self.ccq_alias(), {}).get("api_base", "") if config else ""
        return (base or self.settings.api_base).rstrip("/")

    # -- Cerebras ----------------------------------------------------------------------------
    @cached_property
    def upstream(self) -> Upstream:
        env_file = self.env_file or {}
        cafile = env_file.get("SSL_CERT_FILE") or env_file.get("REQUESTS_CA_BUNDLE") or None
        proxies = self.service_proxies()
        url = self.api_base() + "/models"
        key = self.api_key
        result = http_get(url, headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=15,
                          cafile=cafile if cafile and Path(cafile).exists() else None, proxies=proxies)
        served: list[str] = []
        data = result.json() if result.ok else None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            served = [str(m.get("id")) for m in data["data"] if isinstance(m, dict) and m.get("id")]
        return Upstream(url, result, served)

    @cached_property
    def service_environment(self) -> Mapping[str, str]:
        """The environment the proxy inherits, besides the environment file its launcher sources."""
        return self.manager.service_environment()

    def service_proxies(self) -> dict[str, str]:
        """The HTTP(S) proxies the running proxy uses to reach Cerebras."""
        merged = {**self.service_environment, **(self.env_file or {})}
        proxies = {}
        for scheme in ("https", "http"):
            value = merged.get(f"{scheme.upper()}_PROXY") or merged.get(f"{scheme}_proxy") \
                or merged.get("ALL_PROXY") or merged.get("all_proxy")
            if value:
                proxies[scheme] = value
        return proxies

    # -- LiteLLM's venv ---------------------------------------------------------------------
    @cached_property
    def versions(self) -> dict[str, str]:
        return venv_versions(self.settings.paths["litellm_venv"], ["litellm", "openai"])

    def start_callback_probe(self) -> None:
        """Start importing the callback in LiteLLM's venv now: it takes seconds (LiteLLM's import)."""
        config = self.proxy_config
        python = self.settings.paths["litellm_venv"] / "bin" / "python"
        callback_file = self.settings.paths["proxy_callbacks"]
        if self._callback_probe or not python.exists() or not callback_file.exists():
            return
        attributes = [c.split(".", 1)[1] for c in (config.callbacks if config else [])
                      if c.startswith("custom_callbacks.")] or ["proxy_handler_instance"]
        env = {k: v for k, v in (self.env_file or {}).items() if k not in SECRET_ENV_NAMES}
        env.update({"PATH": self.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.settings.home),
                    "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
        self._callback_probe = subprocess.Popen(
            [str(python), "-c", _IMPORT_PROBE, str(callback_file), *attributes],
            cwd=self.settings.paths["config_dir"], env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    @cached_property
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
    @cached_property
    def claude_version(self) -> str | None:
        claude = self.settings.paths["bin_dir"] / "claude"
        found = str(claude) if claude.exists() else shutil.which("claude", path=self.environ.get("PATH"))
        if not found:
            return None
        env = dict(self.environ, DISABLE_AUTOUPDATER="1")
        done = run([found, "--version"], env=env, timeout=30)
        match = re.match(r"\s*(\d+\.\d+\.\d+\S*)", done.stdout)
        return match.group(1) if done.returncode == 0 and match else ""

    @cached_property
    def node_version(self) -> str | None:
        done = run(["node", "--version"], env=self.environ, timeout=10)
        return done.stdout.strip() if done.returncode == 0 else None
