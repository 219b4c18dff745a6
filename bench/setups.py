"""The contenders, all on 127.0.0.1 in front of the same fake Cerebras processes.

* ``direct``: the client talks OpenAI chat completions to the fake itself.
* ``ccq``: the pinned LiteLLM with the role's config template, callback and
  environment file (rendered by tests/helpers/stack.py, as the integration
  tests do) and the flags of the role's systemd unit.
* ``recipe``: the same LiteLLM with the blog recipe's config (section 4-2;
  docs/provisioning.md), its callback (tests/fixtures/recipe_callback) and its
  command line (section 6),
  plus ``--host 127.0.0.1`` (only loopback is allowed here) and
  LITELLM_LOCAL_MODEL_COST_MAP (no internet here; it only changes where the
  price map is read from at start-up).
* ``ccr``: claude-code-router from npm, one OpenAI-compatible provider per fake,
  logging off, API key on.

One fake per workload, because the fake's answer shape is a process flag:
``small`` answers a few words, ``stream`` 4,000 one-token chunks as fast as it
can, ``paced`` 2,000 chunks at 2,000 tokens/s, ``conc`` 250 chunks (a short answer) at 2,000
tokens/s, ``capture`` logs request bodies (used once, to learn what LiteLLM
sends upstream for the full-size request so ``direct`` can replay it).
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.procs import Registry  # noqa: E402
from tests.helpers import installs, stack  # noqa: E402

# claude-code-router: 3.x requires Node >= 22 (its package.json "engines");
# Debian 12 and this machine have Node 20, so the newest 2.x.
CCR_VERSION = "2.0.0"
CCR_PACKAGE = "@musistudio/claude-code-router"
LAUNCHER_VARS = REPO / "roles/litellm_service/vars/main.yml"
UPSTREAM_MODEL = stack.MODEL_ALIAS  # what every fake serves and every route asks for

# workload -> the fake's flags.  --tool-preference "" makes every answer text,
# so the same tokens flow through every contender.
FAKES: dict[str, list[str]] = {
    "small": ["--tool-preference", ""],
    "stream": ["--tool-preference", "", "--stream-tokens", "4000"],
    "paced": ["--tool-preference", "", "--stream-tokens", "2000", "--tokens-per-second", "2000"],
    "conc": ["--tool-preference", "", "--stream-tokens", "250", "--tokens-per-second", "2000"],
    "capture": ["--tool-preference", ""],
}
STREAM_TOKENS = {"stream": 4000, "paced": 2000, "conc": 250}
PACED_RATE = 2000.0


def alias_for(workload: str) -> str:
    """The proxies' model name for a workload ('small' keeps Claude Code's own alias)."""
    return stack.MODEL_ALIAS if workload == "small" else f"bench-{workload}"


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float) -> float:
    """Poll ``url`` every 20 ms until 200; return the seconds it took."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return time.monotonic() - t0
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.02)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f}s")


@dataclass
class Fake:
    """One fake_cerebras.py process."""

    name: str
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@dataclass
class Upstreams:
    """All the fakes, sharing one API key."""

    workdir: Path
    registry: Registry
    api_key: str = field(default_factory=lambda: "csk-bench-" + secrets.token_hex(16))
    fakes: dict[str, Fake] = field(default_factory=dict)

    def start(self) -> Upstreams:
        self.workdir.mkdir(parents=True, exist_ok=True)
        key_file = self.workdir / "cerebras_api_key"
        key_file.touch(mode=0o600)
        key_file.write_text(self.api_key)
        for name, flags in FAKES.items():
            fake = Fake(name, port=stack.free_port())
            cmd = [sys.executable, str(stack.FAKE_CEREBRAS), "--host", "127.0.0.1",
                   "--port", str(fake.port), "--api-key-file", str(key_file), *flags]
            if name == "capture":
                cmd += ["--request-log", str(self.capture_log)]
            fake.proc = self.registry.spawn(cmd, log=self.workdir / f"fake-{name}.log",
                                            env=stack.base_env())
            self.fakes[name] = fake
        for fake in self.fakes.values():
            assert fake.proc is not None
            wait_healthy(f"http://127.0.0.1:{fake.port}/health", fake.proc, 20)
        return self

    @property
    def capture_log(self) -> Path:
        return self.workdir / "capture.jsonl"

    def captured_bodies(self) -> list[dict[str, Any]]:
        """Chat-completions bodies the capture fake received, oldest first."""
        if not self.capture_log.exists():
            return []
        rows = [json.loads(line) for line in self.capture_log.read_text().splitlines() if line]
        return [r["body"] for r in rows if r.get("path", "").startswith("/v1/chat/completions")]


@dataclass
class Contender:
    """A running proxy (or the direct path) and how to address it."""

    name: str
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    log: Path | None = None
    start_seconds: list[float] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def model_for(self, workload: str) -> str:
        """The model field that routes a request to the workload's fake."""
        if self.name == "ccr":
            # "provider,model" picks a provider directly (ccr's router); the
            # small workload goes through Router.default like Claude Code's.
            return UPSTREAM_MODEL if workload == "small" else f"{workload},{UPSTREAM_MODEL}"
        return alias_for(workload)


def _model_entry(alias: str, api_base: str) -> dict[str, Any]:
    return {"model_name": alias, "litellm_params": {
        "model": f"cerebras/{UPSTREAM_MODEL}", "api_base": api_base,
        "api_key": "os.environ/CEREBRAS_API_KEY"}}


def service_arguments(config: Path, port: int) -> list[str]:
    """The proxy's arguments as the role's launcher runs them: litellm_service_litellm_argv
    (roles/litellm_service/vars/main.yml, the one list the launcher quotes), after the executable.

    Read from the role so the benchmark starts ccq's proxy exactly as the service does; the
    fallback is what that list said when this was written.
    """
    import yaml

    fallback = ["--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                "--telemetry", "False"]
    try:
        argv = yaml.safe_load(LAUNCHER_VARS.read_text(encoding="utf-8"))["litellm_service_litellm_argv"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return fallback
    args = []
    for token in map(str, argv[1:]):
        if "{{" in token:
            if "proxy_config" in token:
                token = str(config)
            elif "port" in token:
                token = str(port)
            else:
                return fallback
        args.append(token)
    return args


def start_ccq(venv: Path, ups: Upstreams, workdir: Path, registry: Registry,
              timeout: float = 120) -> Contender:
    """ccq's proxy: the role's template, callback and environment file."""
    workdir.mkdir(parents=True, exist_ok=True)
    master = "sk-ccq-bench-" + secrets.token_hex(16)
    variables = stack.role_variables(ups.fakes["small"].api_base, master, ups.api_key, state_dir=workdir)
    config = stack.render_config(variables, [])
    for name in FAKES:
        if name != "small":
            entry = copy.deepcopy(config["model_list"][0])
            entry["model_name"] = alias_for(name)
            entry["litellm_params"]["api_base"] = ups.fakes[name].api_base
            config["model_list"].append(entry)
    # What the role deploys beside the config: the callback and the package it imports, as one
    # zip file (ccq_proxy.zip, which the environment file's PYTHONPATH names for the start-up cut).
    shutil.copy2(stack.ROLE_CALLBACK, workdir / stack.ROLE_CALLBACK.name)
    stack.zip_package(stack.PROXY_PACKAGE, workdir / f"{stack.PROXY_PACKAGE.name}.zip")
    import yaml

    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = stack.base_env()
    env.update(stack.render_env(variables))
    port = stack.free_port()
    cmd = [str(venv / "bin/litellm"), *service_arguments(path, port)]
    return _start(Contender("ccq", port=port, headers=_bearer(master)), cmd, env, workdir,
                  registry, "/health/liveliness", timeout)


RECIPE_CALLBACKS_SETTING = "custom_callbacks.proxy_handler_instance"


def recipe_config(ups: Upstreams) -> dict[str, Any]:
    """The blog recipe's ~/.config/litellm/config.yaml (section 4-2), pointed at the fakes."""
    models = [_model_entry(alias_for("small"), ups.fakes["small"].api_base)]
    models += [_model_entry(alias_for(n), ups.fakes[n].api_base) for n in FAKES if n != "small"]
    return {"model_list": models, "litellm_settings": {"callbacks": RECIPE_CALLBACKS_SETTING}}


def start_recipe(venv: Path, ups: Upstreams, workdir: Path, registry: Registry,
                 timeout: float = 120) -> Contender:
    """The blog recipe's setup: its config, its callback, its command line (section 6)."""
    workdir.mkdir(parents=True, exist_ok=True)
    master = "sk-local"  # the recipe's own (public) master key
    shutil.copy2(stack.RECIPE_CALLBACK, workdir / "custom_callbacks.py")
    import yaml

    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(recipe_config(ups), sort_keys=False))
    env = stack.base_env()
    env.update({"LITELLM_MASTER_KEY": master, "CEREBRAS_API_KEY": ups.api_key,
                "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    port = stack.free_port()
    cmd = [str(venv / "bin/litellm"), "--config", str(path), "--port", str(port),
           "--host", "127.0.0.1"]
    return _start(Contender("recipe", port=port, headers=_bearer(master)), cmd, env, workdir,
                  registry, "/health/liveliness", timeout)


def ccr_config(ups: Upstreams, port: int, api_key: str) -> dict[str, Any]:
    """claude-code-router's config.json: one OpenAI-compatible provider per fake."""
    return {
        "LOG": False,  # no log files (README: "When set to false, no log files will be created")
        "HOST": "127.0.0.1",
        "PORT": port,
        "APIKEY": api_key,
        "Providers": [{"name": name, "api_base_url": f"{fake.api_base}/chat/completions",
                       "api_key": ups.api_key, "models": [UPSTREAM_MODEL]}
                      for name, fake in ups.fakes.items()],
        "Router": {"default": f"small,{UPSTREAM_MODEL}"},
    }


def ccr_cli(cache_dir: Path = installs.CACHE_DIR) -> Path:
    return cache_dir / f"ccr-{CCR_VERSION}/node_modules/{CCR_PACKAGE}/dist/cli.js"


def ensure_ccr(cache_dir: Path = installs.CACHE_DIR) -> Path:
    """claude-code-router from npm into .cache/ccr-<version>/ (once); its cli.js."""
    prefix = cache_dir / f"ccr-{CCR_VERSION}"
    cli = ccr_cli(cache_dir)
    if (prefix / installs.COMPLETE_MARKER).exists() and cli.exists():
        return cli
    cache_dir.mkdir(parents=True, exist_ok=True)
    with installs._locked(cache_dir / (prefix.name + ".lock")):
        if (prefix / installs.COMPLETE_MARKER).exists() and cli.exists():
            return cli
        shutil.rmtree(prefix, ignore_errors=True)
        prefix.mkdir(parents=True)
        # The package bundles its dependencies into dist/cli.js; no install
        # script is needed, so none runs.
        installs._run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
                       "--ignore-scripts", f"{CCR_PACKAGE}@{CCR_VERSION}"],
                      cache_dir / (prefix.name + ".log"))
        if not cli.exists():
            raise RuntimeError(f"npm did not install {cli}")
        (prefix / installs.COMPLETE_MARKER).write_text(CCR_VERSION + "\n")
    return cli


def start_ccr(cli: Path, ups: Upstreams, workdir: Path, registry: Registry,
              timeout: float = 60) -> Contender:
    """claude-code-router in the foreground (`ccr start`), HOME in the run directory."""
    home = workdir / "home"
    (home / ".claude-code-router").mkdir(parents=True, exist_ok=True)
    api_key = "sk-ccr-bench-" + secrets.token_hex(16)
    port = stack.free_port()
    config = home / ".claude-code-router/config.json"
    config.touch(mode=0o600)
    config.write_text(json.dumps(ccr_config(ups, port, api_key), indent=2))
    pid_file = home / ".claude-code-router/.claude-code-router.pid"
    pid_file.unlink(missing_ok=True)  # a stale one makes `ccr start` think it runs
    env = stack.base_env()
    env["HOME"] = str(home)
    cmd = ["node", str(cli), "start"]
    return _start(Contender("ccr", port=port, headers=_bearer(api_key)), cmd, env, workdir,
                  registry, "/health", timeout)


def _bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"}


def _start(contender: Contender, cmd: list[str], env: dict[str, str], workdir: Path,
           registry: Registry, health_path: str, timeout: float) -> Contender:
    contender.log = workdir / "proxy.log"
    t0 = time.monotonic()
    contender.proc = registry.spawn(cmd, log=contender.log, env=env, cwd=workdir)
    try:
        wait_healthy(f"http://127.0.0.1:{contender.port}{health_path}", contender.proc, timeout)
    except (RuntimeError, TimeoutError) as exc:
        registry.stop(contender.proc)
        tail = contender.log.read_text(errors="replace")[-3000:] if contender.log.exists() else ""
        raise RuntimeError(f"{contender.name} did not start: {exc}\n{tail}") from exc
    contender.start_seconds.append(time.monotonic() - t0)
    return contender


def node_version() -> str:
    try:
        return subprocess.run(["node", "--version"], capture_output=True, text=True,
                              timeout=20, check=False).stdout.strip()
    except OSError:
        return "not found"


def venv_versions(venv: Path) -> dict[str, str]:
    """Versions of the packages that matter inside the LiteLLM venv."""
    code = ("import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
            "('litellm', 'openai', 'fastapi', 'uvicorn', 'httpx')}))")
    out = subprocess.run([str(venv / "bin/python"), "-c", code], capture_output=True, text=True,
                         timeout=60, check=False, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    try:
        return json.loads(out.stdout)
    except ValueError:
        return {"error": out.stderr[-300:]}
