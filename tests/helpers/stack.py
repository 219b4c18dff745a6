"""Start and stop the test stack: the fake Cerebras upstream and LiteLLM.

Used by tests/conftest.py and reusable by the benchmarks.  Every server binds
127.0.0.1 on a free port; keys are random per run, reach LiteLLM through its
environment (never argv) and reach the fake through a 0600 file.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .http import wait_http_ok
from .installs import REPO_ROOT
from .modules import CALLBACK_FILE, PROXY_PACKAGE, zip_package

FAKE_CEREBRAS = REPO_ROOT / "tests/fake_cerebras/fake_cerebras.py"
ROLE_CALLBACK = CALLBACK_FILE
# The blog recipe's callback, verbatim (tests/fixtures/README.md).
RECIPE_CALLBACK = REPO_ROOT / "tests/fixtures/recipe_callback/custom_callbacks.py"
CONFIG_TEMPLATE = REPO_ROOT / "roles/litellm_proxy/templates/litellm_config.yaml.j2"
ENV_TEMPLATE = REPO_ROOT / "roles/litellm_proxy/templates/litellm.env.j2"
PROXY_DEFAULTS = REPO_ROOT / "roles/litellm_proxy/defaults/main.yml"
CCQ_DEFAULTS = REPO_ROOT / "roles/ccq/defaults/main.yml"
MODEL_ALIAS = "qwen-3-coder-480b"
CLAUDE_CODE_REQUESTS_DIR = REPO_ROOT / "tests/fixtures/claude_code_requests"
# Extra aliases in the test proxy's config, each in front of its own fake.
EMPTY_CONTENT_ALIAS = "ccq-test-empty-content"
UNSERVED_MODEL_ALIAS = "ccq-test-unserved-model"
# Variables of the caller's environment that must not leak into the stack.
SCRUBBED_ENV_PREFIXES = ("ANTHROPIC_", "CEREBRAS_", "LITELLM_", "CLAUDE_", "OPENAI_")


def free_port() -> int:
    """A free loopback TCP port (racy in theory, fine for tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env() -> dict[str, str]:
    """The caller's environment without keys or model routing of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED_ENV_PREFIXES)}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``: only the process we started."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def tail(path: Path, size: int = 4000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-size:]
    except OSError:
        return ""


@dataclass
class FakeUpstream:
    """A running fake_cerebras.py and what tests need to talk to it."""

    workdir: Path
    args: list[str] = field(default_factory=list)
    api_key: str = field(default_factory=lambda: "csk-test-" + secrets.token_hex(16))
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return self.url + "/v1"

    @property
    def log_path(self) -> Path:
        return self.workdir / "requests.jsonl"

    def start(self) -> FakeUpstream:
        self.workdir.mkdir(parents=True, exist_ok=True)
        key_file = self.workdir / "cerebras_api_key"
        key_file.touch(mode=0o600)
        key_file.write_text(self.api_key)
        self.port = free_port()
        cmd = [sys.executable, str(FAKE_CEREBRAS), "--host", "127.0.0.1", "--port", str(self.port),
               "--api-key-file", str(key_file), "--request-log", str(self.log_path), *self.args]
        stderr = open(self.workdir / "fake.log", "wb")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(cmd, stdout=stderr, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=base_env())
        stderr.close()
        wait_http_ok(self.url + "/health", 15, self.proc)
        return self

    def stop(self) -> None:
        stop_process(self.proc)

    def records(self, path: str = "/v1/chat/completions") -> list[dict[str, Any]]:
        """The request log, oldest first, for one path."""
        if not self.log_path.exists():
            return []
        rows = [json.loads(line) for line in self.log_path.read_text(encoding="utf-8").splitlines() if line]
        return [r for r in rows if r["path"].split("?")[0] == path]

    def mark(self) -> int:
        """A position in the request log: pass it to records_since()."""
        return len(self.records())

    def records_since(self, mark: int) -> list[dict[str, Any]]:
        return self.records()[mark:]

    def answers(self) -> list[dict[str, Any]]:
        """What became of each chat answer, oldest first (the fake's /_fake/answers)."""
        from .http import request

        return request("GET", self.url + "/_fake/answers").json()["answers"]


def pick_callback() -> Path:
    """The callback under test: the role's file, the one the play deploys (the blog recipe's
    callback cannot stand in: the role's config names ccq's own auth function)."""
    return ROLE_CALLBACK


def _jinja_env() -> Any:
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["to_json"] = lambda v, **kw: json.dumps(v)
    env.filters["bool"] = lambda v: v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes", "on")
    env.filters["dictsort"] = lambda d: sorted(d.items())
    env.filters["quote"] = lambda value: shlex.quote(str(value))
    env.filters["dirname"] = os.path.dirname
    return env


def render_template(template: Path, **variables: Any) -> str:
    """A role's template, rendered with Ansible's filters that ccq's templates use."""
    text = template.read_text(encoding="utf-8")
    return _jinja_env().from_string(text).render({"ansible_managed": "test", **variables})


def _role_defaults(path: Path = PROXY_DEFAULTS) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def served_model(alias: str = MODEL_ALIAS, upstream_model: str = MODEL_ALIAS, **limits: Any) -> dict[str, Any]:
    """One entry of litellm_proxy_models (site.yml builds them from ccq's model table)."""
    entry = {"alias": alias, "model": upstream_model, "role": "main", "images": False,
             "max_output": 16384, "window": 131072, "reasoning_effort": ""}
    entry.update(limits)
    return entry


def role_variables(api_base: str, master_key: str, cerebras_key: str,
                   models: list[dict[str, Any]] | None = None, state_dir: Path | None = None,
                   config_dir: Path | None = None) -> dict[str, Any]:
    """Template variables: the role's defaults with the test's values on top (``config_dir``,
    where config.yaml and the callback are: ``state_dir`` unless given)."""
    variables = _role_defaults()
    ccq = _role_defaults(CCQ_DEFAULTS)
    variables.update({
        "ansible_managed": "Rendered by tests/helpers/stack.py for the integration tests",
        "litellm_proxy_models": models or [served_model()],
        "litellm_proxy_paths": {"quota_state": str((state_dir or Path(".")) / "quota.json"),
                                "proxy_callbacks": str((config_dir or state_dir or Path(".")) / "custom_callbacks.py")},
        # roles/litellm_proxy/vars/main.yml's: beside the callback.
        "litellm_proxy_package_zip": str((config_dir or state_dir or Path(".")) / f"{PROXY_PACKAGE.name}.zip"),
        "litellm_proxy_api_base": api_base,
        "litellm_proxy_master_key": master_key,
        "litellm_proxy_cerebras_api_key": cerebras_key,
        "litellm_proxy_debug": False,
        # The role's required inputs that site.yml takes from ccq's settings.
        "litellm_proxy_max_tokens_ceiling": ccq["ccq_max_tokens_ceiling"],
        "litellm_proxy_quota_max_wait": ccq["ccq_quota_max_wait"],
        "litellm_proxy_network_environment": {},
    })
    return variables


def render_config(variables: dict[str, Any], extra_models: list[dict[str, Any]]) -> dict[str, Any]:
    """config.yaml as the role renders it, plus extra model entries."""
    import yaml

    text = _jinja_env().from_string(CONFIG_TEMPLATE.read_text(encoding="utf-8")).render(**variables)
    config = yaml.safe_load(text)
    config.setdefault("model_list", []).extend(extra_models)
    return config


def render_env(variables: dict[str, Any]) -> dict[str, str]:
    """The proxy's EnvironmentFile as the role renders it, parsed."""
    text = _jinja_env().from_string(ENV_TEMPLATE.read_text(encoding="utf-8")).render(**variables)
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip().strip('"')
    return env


@dataclass
class LiteLLMProxy:
    """A running LiteLLM proxy in front of one or more fake upstreams."""

    venv: Path
    workdir: Path
    upstream: FakeUpstream
    callback: Path | None = None
    extra_models: list[dict[str, Any]] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    # The aliases the role's config.yaml template serves (None: one, MODEL_ALIAS).
    models: list[dict[str, Any]] | None = None
    master_key: str = field(default_factory=lambda: "sk-test-" + secrets.token_hex(16))
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    startup_timeout: float = 90.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "litellm.log"

    def write_config(self) -> Path:
        import yaml

        self.workdir.mkdir(parents=True, exist_ok=True)
        variables = role_variables(self.upstream.api_base, self.master_key, self.upstream.api_key,
                                   self.models, self.workdir)
        config = render_config(variables, self.extra_models)
        if self.callback is not None:
            # The deployed file itself, copied beside config.yaml as the role
            # deploys it: LiteLLM imports callbacks relative to the config.
            shutil.copy2(self.callback, self.workdir / "custom_callbacks.py")
            # The package it imports, as the role deploys it: one zip file, ccq_proxy.zip (the
            # blog recipe's callback has none).
            package = self.callback.with_name(PROXY_PACKAGE.name)
            if package.is_dir():
                zip_package(package, self.workdir / f"{package.name}.zip")
        else:
            config.get("litellm_settings", {}).pop("callbacks", None)
        path = self.workdir / "config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        self._env = render_env(variables)
        return path

    def start(self) -> LiteLLMProxy:
        config = self.write_config()
        self.port = free_port()
        env = base_env()
        env.update(self._env)
        env.update({
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_TELEMETRY": "False",
            "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.extra_env)
        cmd = [str(self.venv / "bin/litellm"), "--config", str(config),
               "--host", "127.0.0.1", "--port", str(self.port)]
        log = open(self.log_path, "wb")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=env, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        try:
            wait_http_ok(self.url + "/health/liveliness", self.startup_timeout, self.proc)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"LiteLLM did not become healthy: {exc}\n{tail(self.log_path)}") from exc
        return self

    def stop(self) -> None:
        stop_process(self.proc)


@contextmanager
def upstream_and_proxies(fake: FakeUpstream, proxies: Callable[[FakeUpstream], dict[str, LiteLLMProxy]]
                         ) -> Iterator[tuple[FakeUpstream, dict[str, LiteLLMProxy]]]:
    """Start ``fake``, then each proxy ``proxies(fake)`` names (built once the fake's port is
    known); everything started is stopped on exit, also when a later start fails."""
    started: dict[str, LiteLLMProxy] = {}
    try:
        fake.start()
        for name, proxy in proxies(fake).items():
            started[name] = proxy.start()
        yield fake, started
    finally:
        for proxy in started.values():
            proxy.stop()
        fake.stop()


class ProxyStack:
    """The session's proxy and the fakes behind it."""

    def __init__(self, proxy: LiteLLMProxy, fake: FakeUpstream, fake_empty: FakeUpstream) -> None:
        self.proxy = proxy
        self.fake = fake  # strict, content null beside tool calls
        self.fake_empty = fake_empty  # strict, content "" beside tool calls

    @property
    def url(self) -> str:
        return self.proxy.url

    @property
    def token(self) -> str:
        return self.proxy.master_key

    def upstream_for(self, alias: str) -> FakeUpstream:
        return self.fake_empty if alias == EMPTY_CONTENT_ALIAS else self.fake


def anthropic_body(path: Path, stream: bool, model: str = MODEL_ALIAS) -> dict[str, Any]:
    """A captured request, retargeted at the alias, streamed or not."""
    body = json.loads(path.read_text(encoding="utf-8"))
    body["model"] = model
    body["stream"] = stream
    return body
