"""ccq doctor, status and logs run as a user would run them, on a machine without systemd.

Each test builds a home directory laid out as the roles lay it out: the real ccq shell
functions (rendered from roles/ccq_shell) and proxy launcher (roles/litellm_service), a
~/.bashrc with ccq's marked block, 0600 key files, config.yaml rendered from
roles/litellm_proxy, a LiteLLM venv (its dist-info only), a stand-in LiteLLM process started
the way ccq starts it on demand (pidfile, log file), and the fake Cerebras upstream.  Faults
are injected one at a time: doctor must name each with FAIL and exit 1, and be clean again
once it is repaired.  No key may ever reach the output.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from helpers.doctor_settings import ccq_layout, doctor_settings
from helpers.http import wait_http_ok
from helpers.modules import build_doctor, load_doctor
from helpers.stack import CONFIG_TEMPLATE, free_port, served_model, stop_process
from helpers.stack import render_template as render

# Processes: the fake Cerebras, a stand-in LiteLLM started by the rendered launcher, the built
# doctor file (tests/unit stays in-process).
pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SHELL_TEMPLATE = REPO / "roles/ccq_shell/templates/ccq.sh.j2"
LAUNCHER_TEMPLATE = REPO / "roles/litellm_service/templates/ccq-proxy.sh.j2"
# The launcher's systemd unit: none by this name, so its --start never touches a real ccq.
TEST_SERVICE_NAME = "ccq-doctor-end-to-end-test"
ALIAS = "qwen-3-coder-480b"
SERVED = "qwen-3-coder-480b,gpt-oss-120b,zai-glm-4.7"
# ccq's table of retired models, as site.yml hands it to doctor (a replacement retired in turn).
RETIRED = {"zai-glm-4.6": {"retired": "2026-01-20", "replacement": "zai-glm-4.7"},
           "zai-glm-4.7": {"retired": "2026-10", "replacement": "gpt-oss-120b"}}


LAYOUT = ccq_layout()
# The versions ccq pins, which the stand-in venv and claude report.
PINNED = doctor_settings(Path("/"))
LITELLM_VERSION, CLAUDE_CODE_VERSION = PINNED["litellm_version"], PINNED["claude_code_version"]
STATUS_LINE = re.compile(r"^(ok|warn|FAIL)\s+(\S+)\s")

# Serves what doctor asks of LiteLLM: /health/liveliness without a key; /v1/models and
# /health/readiness with the master key from its environment (LITELLM_MASTER_KEY), 401
# otherwise. Like LiteLLM, it loads the configured callback at start and dies if it cannot.
FAKE_LITELLM = '''#!{python}
import argparse, importlib.util, json, os, re, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
p = argparse.ArgumentParser()
p.add_argument("--config"); p.add_argument("--host"); p.add_argument("--port", type=int)
p.add_argument("--telemetry"); p.add_argument("--drop_params", action="store_true")
args = p.parse_args()
config = open(args.config).read()
aliases = re.findall(r'model_name: "?([^"\\n]+)"?', config)
loaded = []
for name in re.findall(r"callbacks: *custom_callbacks\\.(\\w+)", config):
    callbacks_file = os.path.join(os.path.dirname(args.config), "custom_callbacks.py")
    spec = importlib.util.spec_from_file_location("custom_callbacks", callbacks_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    loaded.append(type(getattr(module, name)).__name__)
key = os.environ["LITELLM_MASTER_KEY"]
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        authorized = self.headers.get("Authorization") == "Bearer " + key
        if self.path == "/health/liveliness":
            status, body = 200, "I'm alive!"
        elif not authorized:
            status, body = 401, {{"error": "auth"}}
        elif self.path == "/v1/models":
            status, body = 200, {{"data": [{{"id": a}} for a in aliases]}}
        elif self.path == "/health/readiness":
            status, body = 200, {{"litellm_version": "{litellm_version}",
                                  "success_callbacks": loaded + ["ServiceLogging"]}}
        else:
            status, body = 404, {{}}
        data = json.dumps(body).encode()
        self.send_response(status); self.send_header("content-length", str(len(data))); self.end_headers()
        self.wfile.write(data)
    def log_message(self, fmt, *a):
        sys.stdout.write("INFO: " + (fmt % a) + "\\n"); sys.stdout.flush()
ThreadingHTTPServer((args.host, args.port), H).serve_forever()
'''

STUB_CALLBACK = """# Stand-in for custom_callbacks.py: the real one needs LiteLLM installed.
class CcqAnthropicNormalizer:
    pass
proxy_handler_instance = CcqAnthropicNormalizer()
async def ccq_master_key_auth(request, api_key):
    return None
"""


# What ccq tells Claude Code in this test home (ccq.sh) and what doctor.json expects.
CLAUDE_CODE_LIMITS = {"CLAUDE_CODE_MAX_CONTEXT_TOKENS": "65536", "DISABLE_AUTOUPDATER": "1",
                      "CLAUDE_CODE_RESUME_HINT_COMMAND": "ccq"}

def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


@dataclass
class Home:
    """One user's ccq setup in a temporary home, and the processes that serve it."""

    root: Path
    upstream_base: str
    upstream_key: str
    port: int = 0
    master_key: str = field(default_factory=lambda: "sk-ccq-" + secrets.token_hex(20))
    proxy: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    # The doctor as the role deploys it: the one file built from the package (the doctor fixture).
    doctor_file: Path = Path()
    # The Cerebras model of Claude Code's background calls (ccq_background_model); "": none.
    background: str = ""

    @property
    def background_alias(self) -> str:
        return f"{ALIAS}-background" if self.background else ""

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def paths(self) -> dict[str, Path]:
        return {name: self.home / rel for name, rel in LAYOUT.items()}

    def build(self) -> Home:
        paths = self.paths
        self.port = free_port()
        for name in ("secrets_dir", "config_dir", "state_dir"):
            paths[name].mkdir(parents=True, exist_ok=True)
            paths[name].chmod(0o700)
        write_private(paths["api_key_file"], self.upstream_key)
        write_private(paths["master_key_file"], self.master_key)
        write_private(paths["proxy_env_file"], f"CEREBRAS_API_KEY={self.upstream_key}\n"
                                               f"LITELLM_MASTER_KEY={self.master_key}\n"
                                               "LITELLM_LOCAL_MODEL_COST_MAP=True\nCCQ_MAX_TOKENS_CEILING=16384\n")
        models = [served_model(ALIAS, ALIAS, window=65536)]
        if self.background:
            models.append(served_model(self.background_alias, self.background, role="background"))
        write_private(paths["proxy_config"], render(
            CONFIG_TEMPLATE, litellm_proxy_models=models,
            litellm_proxy_api_base=self.upstream_base, litellm_proxy_debug=False))
        write_private(paths["proxy_callbacks"], STUB_CALLBACK)
        shell_paths = {name: str(path) for name, path in paths.items()}
        write_private(paths["shell_functions"], render(
            SHELL_TEMPLATE, ccq_shell_paths=shell_paths, ccq_shell_proxy_port=self.port, ccq_shell_model_alias=ALIAS,
            ccq_shell_background_model_alias=self.background_alias, ccq_shell_start_timeout=5,
            ccq_shell_start_proxy_with_shell=False,
            ccq_shell_claude_code_environment=CLAUDE_CODE_LIMITS, ccq_shell_claude_code_arguments=[]), 0o644)
        # doctor.json (written last), whose launcher_argv the launcher runs.
        settings = doctor_settings(
            self.home, port=self.port, model_alias=ALIAS, api_base=self.upstream_base,
            model_preference=["qwen-3-coder-480b", "zai-glm-4.7", "gpt-oss-120b"], service_manager="none",
            claude_code_environment=CLAUDE_CODE_LIMITS, background_model_alias=self.background_alias,
            background_model=self.background, retired_models=RETIRED)
        paths["proxy_launcher"].parent.mkdir(parents=True, exist_ok=True)
        write_private(paths["proxy_launcher"], render(
            LAUNCHER_TEMPLATE, litellm_service_paths=shell_paths, litellm_service_port=self.port,
            litellm_service_litellm_argv=settings["launcher_argv"],
            litellm_service_launcher=str(paths["proxy_launcher"]), litellm_service_name=TEST_SERVICE_NAME,
            litellm_service_manager="none",
            litellm_service_health_url=f"http://127.0.0.1:{self.port}/health/liveliness"), 0o700)
        write_private(self.home / ".bashrc", "# the user's own line\n# BEGIN ccq: cc and ccq\n"
                      f'[ -r "{paths["shell_functions"]}" ] && . "{paths["shell_functions"]}"\n# END ccq: cc and ccq\n',
                      0o644)
        venv = paths["litellm_venv"]
        write_private(venv / "bin/python", f'#!/bin/sh\nexec "{sys.executable}" "$@"\n', 0o755)
        write_private(venv / "bin/litellm",
                      FAKE_LITELLM.format(python=sys.executable, litellm_version=LITELLM_VERSION), 0o755)
        for name, version in (("litellm", LITELLM_VERSION), ("openai", "1.99.9")):
            write_private(venv / f"lib/python3.11/site-packages/{name}-{version}.dist-info/METADATA",
                          f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", 0o644)
        write_private(paths["bin_dir"] / "claude", f"#!/bin/sh\necho '{CLAUDE_CODE_VERSION} (Claude Code)'\n", 0o755)
        write_private(self.root / "fakebin/node", "#!/bin/sh\necho v18.19.0\n", 0o755)
        write_private(paths["doctor_config"], json.dumps(settings))
        return self

    # -- the proxy, as ccq starts it on demand ------------------------------------------------
    def start_proxy(self, port: int | None = None, *extra: str) -> None:
        paths = self.paths
        env = {"PATH": os.environ["PATH"], "HOME": str(self.home)}
        env.update(line.split("=", 1) for line in paths["proxy_env_file"].read_text().splitlines() if "=" in line)
        log = open(paths["proxy_log"], "ab")  # noqa: SIM115 - lives with the process
        paths["proxy_log"].chmod(0o600)
        self.proxy = subprocess.Popen(
            [str(paths["litellm_venv"] / "bin/litellm"), "--config", str(paths["proxy_config"]), "--host", "127.0.0.1",
             "--port", str(port or self.port), "--telemetry", "False", *extra],
            env=env, cwd=paths["config_dir"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        paths["proxy_pidfile"].write_text(f"{self.proxy.pid}\n")
        wait_http_ok(f"http://127.0.0.1:{port or self.port}/health/liveliness", 15, self.proxy)

    def stop_proxy(self) -> None:
        stop_process(self.proxy)
        self.proxy = None

    # -- running ccq's commands ----------------------------------------------------------------
    def env(self) -> dict[str, str]:
        scrubbed = ("ANTHROPIC_", "CLAUDE_", "CEREBRAS_", "LITELLM_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                    "http_proxy", "https_proxy", "all_proxy", "NO_PROXY", "no_proxy")
        env = {k: v for k, v in os.environ.items() if not k.startswith(scrubbed)}
        env.update(HOME=str(self.home), SHELL="/bin/bash", PATH=f"{self.root / 'fakebin'}:{os.environ['PATH']}")
        env.update(self.extra_env)
        return env

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, str(self.doctor_file), *args], env=self.env(), cwd=self.home,
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        for secret in (self.master_key, self.upstream_key, *self.paths_secrets()):
            assert secret not in done.stdout + done.stderr, "a key reached the output"
        return done

    def paths_secrets(self) -> list[str]:
        paths = self.paths
        found = [paths["master_key_file"].read_text().strip() if paths["master_key_file"].exists() else ""]
        env_file = paths["proxy_env_file"].read_text() if paths["proxy_env_file"].exists() else ""
        found += [line.split("=", 1)[1] for line in env_file.splitlines()
                  if line.startswith(("CEREBRAS_", "LITELLM_MASTER"))]
        return [s for s in found if s]

    def doctor(self) -> tuple[int, dict[str, str], str]:
        """Exit status, {check id: status}, and the whole output."""
        done = self.run("doctor")
        statuses = {m.group(2): m.group(1) for m in map(STATUS_LINE.match, done.stdout.splitlines()) if m}
        assert done.stderr == "", done.stderr
        return done.returncode, statuses, done.stdout


@pytest.fixture(scope="module")
def doctor_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The doctor built into one file, as roles/ccq_doctor builds and deploys it."""
    return build_doctor(tmp_path_factory.mktemp("doctor") / "ccq_doctor.py")


@pytest.fixture
def home(tmp_path: Path, make_fake: Callable[..., Any], doctor_file: Path) -> Iterator[Home]:
    fake = make_fake("--models", SERVED)
    built = Home(tmp_path, fake.api_base, fake.api_key, doctor_file=doctor_file).build()
    built.start_proxy()
    yield built
    built.stop_proxy()


def assert_clean(home: Home) -> None:
    rc, statuses, output = home.doctor()
    assert rc == 0 and doctor_failures(statuses) == [], output


def doctor_failures(statuses: dict[str, str]) -> list[str]:
    return sorted(check for check, status in statuses.items() if status == "FAIL")


def test_a_healthy_setup_is_all_ok_and_exits_zero(home):
    rc, statuses, output = home.doctor()
    assert rc == 0, output
    assert set(statuses.values()) == {"ok"}, output
    assert len(statuses) == 18
    assert output.rstrip().endswith("0 failed, 0 warnings, 18 ok")


def test_status_says_up_port_model_versions_and_uptime(home):
    done = home.run("status")
    assert done.returncode == 0, done.stdout
    assert re.search(rf"^proxy\s+up \(on demand, no systemd, pid {home.proxy.pid}, up \d+s\)", done.stdout, re.M)
    assert f"127.0.0.1:{home.port}" in done.stdout
    assert f"{ALIAS} -> cerebras/{ALIAS} at {home.upstream_base}" in done.stdout
    assert f"litellm {LITELLM_VERSION}, openai 1.99.9, claude {CLAUDE_CODE_VERSION}" in done.stdout
    home.stop_proxy()
    down = home.run("status")
    assert down.returncode == 3 and re.search(r"^proxy\s+down", down.stdout, re.M)


def test_without_doctor_json_doctor_and_status_say_so_in_one_line(home):
    settings_file = home.paths["doctor_config"]
    settings_file.rename(settings_file.with_name("doctor.json.moved"))
    doctor_run, status_run = home.run("doctor"), home.run("status")
    line = f"FAIL  settings  {settings_file} is missing: re-run the provisioning ("
    assert doctor_run.returncode == 1 and doctor_run.stdout.splitlines()[0].startswith(line), doctor_run.stdout
    assert status_run.returncode == 4 and status_run.stdout.splitlines()[0].startswith(line), status_run.stdout
    assert len(doctor_run.stdout.splitlines()) == len(status_run.stdout.splitlines()) == 1
    assert doctor_run.stderr == status_run.stderr == ""


def test_status_shows_the_quota_the_proxy_last_heard_of(home):
    quota = home.paths["quota_state"]
    done = home.run("status")
    assert done.returncode == 0 and "\nquota     no answer from Cerebras recorded yet\n" in done.stdout, done.stdout
    now = time.time()
    quota.write_text(json.dumps({"models": {ALIAS: {
        "tokens_limit": 150000, "tokens_remaining": 45000, "tokens_reset_at": now + 48,
        "requests_day_limit": 14400, "requests_day_remaining": 14000, "requests_day_reset_at": now + 3600,
        "seen_at": now - 12}}}))
    done = home.run("status")
    assert done.returncode == 0
    assert re.search(rf"^quota     {ALIAS}: 45,000 of 150,000 tokens left this minute \(1[2-9] s ago\), "
                     r"14,000 of 14,400 requests left today$", done.stdout, re.MULTILINE), done.stdout
    assert "\nspent " not in done.stdout and "\nrepairs " not in done.stdout  # nothing counted yet
    quota.write_text(json.dumps({"models": {}, "purposes": {
        "auto-mode checks": {"requests": 3, "tokens": 9000}, "work": {"requests": 9, "tokens": 27000}},
        "counters": {"tool_arguments_repaired": 2, "tool_arguments_unrepairable": 1}}))
    done = home.run("status")
    assert re.findall(r"^repairs .*$", done.stdout, re.MULTILINE) == [
        "repairs   2 tool call(s) with broken JSON arguments repaired, 1 refused (Claude Code retried them) "
        "since the proxy started"], done.stdout
    assert re.findall(r"^spent .*$", done.stdout, re.MULTILINE) == [
        "spent     work: 9 of 12 requests, 27,000 of 36,000 tokens reserved (75%) since the proxy started",
        "spent     auto-mode checks: 3 of 12 requests, 9,000 of 36,000 tokens reserved (25%) since the proxy started",
    ], done.stdout
    quota.write_text('{"models": {')  # half a file
    done = home.run("status")
    assert done.returncode == 0 and done.stderr == ""
    [line] = [line for line in done.stdout.splitlines() if line.startswith("quota")]
    assert line.startswith(f"quota     {quota} is garbled (") and "Traceback" not in done.stdout
    home.stop_proxy()
    assert home.run("status").returncode == 3


@pytest.fixture
def background_home(tmp_path: Path, make_fake: Callable[..., Any], doctor_file: Path) -> Iterator[Home]:
    """A home whose Claude Code background calls go to gpt-oss-120b behind their own alias."""
    fake = make_fake("--models", SERVED)
    built = Home(tmp_path, fake.api_base, fake.api_key, doctor_file=doctor_file, background="gpt-oss-120b").build()
    built.start_proxy()
    yield built
    built.stop_proxy()


def test_a_background_model_is_checked_and_shown(background_home):
    home = background_home
    rc, statuses, output = home.doctor()
    assert rc == 0 and set(statuses.values()) == {"ok"}, output
    assert f"to the background alias {home.background_alias}" in output
    assert f"'{home.background_alias}' are model_names" in output and "the background model gpt-oss-120b" in output
    done = home.run("status")
    assert f"model     {home.background_alias} -> cerebras/gpt-oss-120b (Claude Code's background calls)" in done.stdout


def test_background_calls_on_the_main_alias_and_a_lost_background_alias_are_named(background_home, make_fake):
    home = background_home
    shell = home.paths["shell_functions"]
    repair_shell = edit(shell, lambda text: text.replace(f"={home.background_alias}", f"={ALIAS}"))
    repair_config = edit(home.paths["proxy_config"],
                         lambda text: text.replace(f'model_name: "{home.background_alias}"', 'model_name: "renamed"'))
    rc, statuses, output = home.doctor()
    assert rc == 1 and {"small-fast", "alias"} <= set(doctor_failures(statuses)), output
    assert f"instead of the background alias {home.background_alias}" in output
    assert f"'{home.background_alias}' (background calls)" in output
    repair_shell()
    repair_config()
    assert_clean(home)


def test_a_retired_background_model_names_its_replacement(background_home, make_fake):
    home = background_home
    retired = make_fake("--models", "qwen-3-coder-480b,gpt-oss-120b", api_key=home.upstream_key)
    repair = edit(home.paths["proxy_config"], lambda text: text.replace(home.upstream_base, retired.api_base)
                  .replace('"cerebras/gpt-oss-120b"', '"cerebras/zai-glm-4.6"'))
    rc, statuses, output = home.doctor()
    assert rc == 1 and doctor_failures(statuses) == ["model"], output
    assert ("Cerebras retired the background model zai-glm-4.6 in 2026-01-20; its replacement is gpt-oss-120b"
            in output)
    assert "ccq_background_model=gpt-oss-120b" in output
    repair()
    assert_clean(home)


def test_logs_show_recent_lines_with_every_key_masked(home):
    log = home.paths["proxy_log"]
    with open(log, "a") as fh:
        fh.write(f"DEBUG headers Authorization: Bearer {home.master_key}\n")
        fh.write(f"DEBUG env CEREBRAS_API_KEY={home.upstream_key}\n")
        fh.write("DEBUG an old key sk-ccq-" + "0123456789" * 2 + " and the last line\n")
    done = home.run("logs", "-n", "3")
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and lines[-1].endswith("and the last line")
    assert "0123456789" * 2 not in done.stdout
    assert "***" in lines[0] and "***" in lines[1]


def test_checks_are_listed_as_the_readme_table(doctor_file):
    done = subprocess.run([sys.executable, str(doctor_file), "checks", "--markdown"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("| doctor check |")


# --- faults: inject, doctor names it, repair, doctor is clean --------------------------------

Repair = Callable[[], None]


def edit(path: Path, change: Callable[[str], str]) -> Repair:
    """Change a file; the repair puts back its bytes and mode."""
    before, mode = path.read_bytes(), path.stat().st_mode

    def repair() -> None:
        path.write_bytes(before)
        path.chmod(mode)

    path.write_text(change(path.read_text()))
    return repair


def drop_lines(*names: str) -> Callable[[str], str]:
    return lambda text: "\n".join(line for line in text.splitlines()
                                  if not any(line.strip().startswith(n + "=") for n in names)) + "\n"


def crash_the_proxy(home: Home) -> Repair:
    home.stop_proxy()
    with open(home.paths["proxy_log"], "a") as fh:
        fh.write("Traceback (most recent call last):\n  File \"litellm/__init__.py\", line 1\n"
                 "ImportError: cannot import name 'ResponseTextConfig' from 'openai.types.responses'\n")
    return lambda: home.start_proxy()


def move_the_proxy_to_another_port(home: Home) -> Repair:
    home.stop_proxy()
    home.start_proxy(free_port())

    def repair() -> None:
        home.stop_proxy()
        home.start_proxy()
    return repair


def rotate_the_master_key_without_restart(home: Home) -> Repair:
    new_key = "sk-ccq-" + secrets.token_hex(20)
    paths = home.paths
    edit(paths["master_key_file"], lambda _: new_key)
    edit(paths["proxy_env_file"],
         lambda text: re.sub(r"(?m)^LITELLM_MASTER_KEY=.*$", f"LITELLM_MASTER_KEY={new_key}", text))

    def repair() -> None:  # doctor's fix: restart the proxy so it reads the new key
        home.master_key = new_key
        home.stop_proxy()
        home.start_proxy()
    return repair


def put_openai_1_100_in_the_venv(home: Home) -> Repair:
    site = home.paths["litellm_venv"] / "lib/python3.11/site-packages"
    good, bad = site / "openai-1.99.9.dist-info", site / "openai-1.100.0.dist-info"
    good.rename(bad)
    edit(bad / "METADATA", lambda text: text.replace("1.99.9", "1.100.0"))

    def repair() -> None:
        bad.rename(good)
        (good / "METADATA").write_text((good / "METADATA").read_text().replace("1.100.0", "1.99.9"))
    return repair


def restart_with_drop_params(home: Home) -> Repair:
    home.stop_proxy()
    home.start_proxy(None, "--drop_params")

    def repair() -> None:
        home.stop_proxy()
        home.start_proxy()
    return repair


def let_the_launcher_bind_every_address(home: Home) -> Repair:
    # LiteLLM's default is 0.0.0.0: the next start would be reachable from the network.
    return edit(home.paths["proxy_launcher"], lambda text: text.replace(" --host 127.0.0.1", ""))


def put_drop_params_in_the_launcher(home: Home) -> Repair:
    return edit(home.paths["proxy_launcher"],
                lambda text: text.replace("--telemetry False", "--telemetry False --drop_params"))


def remove_the_callback_line(home: Home) -> Repair:
    return edit(home.paths["proxy_config"],
                lambda text: "\n".join(line for line in text.splitlines() if "callbacks:" not in line) + "\n")


def break_the_callback_import(home: Home) -> Repair:
    # LiteLLM fails at start when the callback does not import: the on-demand start dies.
    restore = edit(home.paths["proxy_callbacks"],
                   lambda text: "raise ImportError(\"cannot import name 'ResponseTextConfig'\")\n" + text)
    home.stop_proxy()
    with pytest.raises(RuntimeError):
        home.start_proxy()

    def repair() -> None:
        restore()
        home.start_proxy()
    return repair


def start_without_the_callback(home: Home) -> Repair:
    restore = edit(home.paths["proxy_config"],
                   lambda text: "\n".join(line for line in text.splitlines() if "callbacks:" not in line) + "\n")
    home.stop_proxy()
    home.start_proxy()
    restore()  # config.yaml loads it again, but the running proxy started without it

    def repair() -> None:  # doctor's fix: restart
        home.stop_proxy()
        home.start_proxy()
    return repair


def unset_the_routing_variables(home: Home) -> Repair:
    return edit(home.paths["shell_functions"],
                drop_lines("ANTHROPIC_DEFAULT_SONNET_MODEL", "CLAUDE_CODE_SUBAGENT_MODEL"))


def unset_the_small_fast_variables(home: Home) -> Repair:
    return edit(home.paths["shell_functions"],
                drop_lines("ANTHROPIC_SMALL_FAST_MODEL", "ANTHROPIC_DEFAULT_HAIKU_MODEL"))


def stop_telling_claude_code_the_window(home: Home) -> Repair:
    return edit(home.paths["shell_functions"], lambda text: "\n".join(
        line for line in text.splitlines() if "CLAUDE_CODE_MAX_CONTEXT_TOKENS=" not in line) + "\n")


def make_the_alias_stale(home: Home) -> Repair:
    return edit(home.paths["proxy_config"],
                lambda text: text.replace(f'model_name: "{ALIAS}"', 'model_name: "renamed-alias"'))


def point_at_an_upstream_without_the_model(home: Home, make_fake: Callable[..., Any]) -> Repair:
    retired = make_fake("--models", "gpt-oss-120b,zai-glm-4.7", api_key=home.upstream_key)
    return edit(home.paths["proxy_config"], lambda text: text.replace(home.upstream_base, retired.api_base))


def loosen_the_file_modes(home: Home) -> Repair:
    paths = home.paths
    paths["api_key_file"].chmod(0o644)
    paths["proxy_env_file"].chmod(0o640)
    paths["secrets_dir"].chmod(0o755)

    def repair() -> None:  # doctor's fix, run as printed
        fix = next(line for line in home.run("doctor").stdout.splitlines() if "fix: chmod" in line)
        subprocess.run(fix.split("fix: ", 1)[1], shell=True, check=True)
    return repair


def proxy_variable_and_a_ccq_without_no_proxy(home: Home) -> Repair:
    home.extra_env["HTTPS_PROXY"] = "http://proxy.invalid:3128"
    # A ccq older than ccq's own (or edited by hand) that does not add 127.0.0.1 to NO_PROXY.
    return edit(home.paths["shell_functions"], drop_lines("NO_PROXY", "no_proxy"))


def refuse_the_cerebras_key(home: Home) -> Repair:
    return edit(home.paths["proxy_env_file"],
                lambda text: re.sub(r"(?m)^CEREBRAS_API_KEY=.*$", "CEREBRAS_API_KEY=csk-revoked-" + "0" * 12, text))


def remove_claude_code(home: Home) -> Repair:
    claude = home.paths["bin_dir"] / "claude"
    saved = claude.read_bytes()
    claude.unlink()

    def repair() -> None:
        write_private(claude, saved.decode(), 0o755)
    return repair


def shadow_ccq_with_the_blog_recipes_ccq(home: Home) -> Repair:
    # The ccq() of the Japanese blog recipe ccq started from, further down ~/.bashrc.
    blog_recipe = ('ccq() {\n  NO_PROXY="127.0.0.1,localhost" ANTHROPIC_BASE_URL="http://127.0.0.1:4000" \\\n'
            '  ANTHROPIC_AUTH_TOKEN="sk-local" ANTHROPIC_SMALL_FAST_MODEL="qwen-3-coder-480b" \\\n'
            '  claude --model qwen-3-coder-480b "$@"\n}\n')
    return edit(home.home / ".bashrc", lambda text: text + blog_recipe)


def remove_the_rc_block(home: Home) -> Repair:
    return edit(home.home / ".bashrc", lambda text: "# the user's own line\n")


FAULTS: list[tuple[str, Callable[..., Repair], set[str]]] = [
    ("the on-demand proxy crashed", crash_the_proxy, {"service"}),
    ("the proxy listens on another port", move_the_proxy_to_another_port, {"port"}),
    ("the key was rotated without a restart", rotate_the_master_key_without_restart, {"auth"}),
    ("openai 1.100.0 in LiteLLM's venv", put_openai_1_100_in_the_venv, {"versions"}),
    ("--drop_params", restart_with_drop_params, {"drop-params"}),
    ("--drop_params in the launcher", put_drop_params_in_the_launcher, {"drop-params"}),
    ("the launcher lacks --host 127.0.0.1", let_the_launcher_bind_every_address, {"loopback"}),
    ("the callback line is gone", remove_the_callback_line, {"callback"}),
    ("the callback does not import", break_the_callback_import, {"callback", "service"}),
    ("the running proxy has no callback", start_without_the_callback, {"callback"}),
    ("the routing variables are unset", unset_the_routing_variables, {"routing"}),
    ("the small/fast variables are unset", unset_the_small_fast_variables, {"small-fast"}),
    ("ccq does not tell Claude Code the window", stop_telling_claude_code_the_window, {"window"}),
    ("a stale alias", make_the_alias_stale, {"alias"}),
    ("a model the upstream does not serve", point_at_an_upstream_without_the_model, {"model"}),
    ("loose file modes", loosen_the_file_modes, {"file-modes"}),
    ("a proxy variable without NO_PROXY", proxy_variable_and_a_ccq_without_no_proxy, {"proxy-env"}),
    ("Cerebras refuses the key", refuse_the_cerebras_key, {"upstream"}),
    ("Claude Code is missing", remove_claude_code, {"claude-code"}),
    ("the blog recipe's ccq shadows ccq's", shadow_ccq_with_the_blog_recipes_ccq, {"auth", "routing"}),
    ("no ccq in a new shell", remove_the_rc_block, {"shell"}),
]


@pytest.mark.parametrize("inject, expected", [(f[1], f[2]) for f in FAULTS], ids=[f[0] for f in FAULTS])
def test_doctor_names_each_fault_and_is_clean_after_the_repair(home, make_fake, inject, expected):
    # The starting point is the healthy home of test_a_healthy_setup_is_all_ok_and_exits_zero.
    needs_fake = "make_fake" in inject.__code__.co_varnames[:inject.__code__.co_argcount]
    repair = inject(home, make_fake) if needs_fake else inject(home)
    rc, statuses, output = home.doctor()
    assert rc == 1, output
    assert expected <= set(doctor_failures(statuses)), output
    for check in expected:
        block = output.split(f"FAIL  {check}", 1)[1].split("\nok ", 1)[0]
        assert "fix: " in block, f"no fix printed for {check}:\n{output}"
    repair()
    assert_clean(home)


def test_the_proxy_variable_alone_is_a_warning_because_ccq_exempts_loopback(home):
    home.extra_env["HTTPS_PROXY"] = "http://proxy.invalid:3128"
    rc, statuses, output = home.doctor()
    assert rc == 0 and statuses["proxy-env"] == "warn", output


def test_a_stopped_on_demand_proxy_is_only_a_warning(home):
    home.stop_proxy()
    rc, statuses, output = home.doctor()
    assert rc == 0, output
    assert statuses["service"] == "warn" and "ccq starts it on its next call" in output


def test_the_launcher_starts_the_proxy_on_demand_as_doctor_expects(home):
    """ccq's on-demand start (the launcher's --start without a service manager): detached,
    its pid in the pidfile, its output after a start marker in the proxy log."""
    home.stop_proxy()
    paths = home.paths
    paths["proxy_pidfile"].unlink()
    env = {"PATH": os.environ["PATH"], "HOME": str(home.home)}  # no key comes from the caller
    started = subprocess.run(["/bin/sh", str(paths["proxy_launcher"]), "--start"], env=env, capture_output=True,
                             text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert started.returncode == 0, started.stderr
    pid = int(paths["proxy_pidfile"].read_text())
    try:
        wait_http_ok(f"http://127.0.0.1:{home.port}/health/liveliness", 15)
        assert subprocess.run(["/bin/sh", str(paths["proxy_launcher"]), "--healthy"], env=env).returncode == 0
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert Path(argv[1].decode()).name == "litellm" and b"127.0.0.1" in argv
        assert "ccq: starting the proxy at " in paths["proxy_log"].read_text()
        assert paths["proxy_log"].stat().st_mode & 0o777 == 0o600
        done = home.run("status")
        assert done.returncode == 0 and f"on demand, no systemd, pid {pid}," in done.stdout, done.stdout
        rc, statuses, output = home.doctor()
        assert rc == 0 and doctor_failures(statuses) == [], output
    finally:
        os.kill(pid, 15)
    deadline = time.monotonic() + 10
    while subprocess.run(["/bin/sh", str(paths["proxy_launcher"]), "--healthy"], env=env).returncode == 0:
        assert time.monotonic() < deadline, "the proxy did not stop"
        time.sleep(0.2)


def test_doctor_runs_only_the_checks_named(home):
    done = home.run("doctor", "model", "window")
    # What ccq tells Claude Code includes the command its exit hint names: doctor says how to resume.
    assert re.search(r"^ok +window +.*; resume a session with `ccq --resume <id>` or `ccq --continue`$",
                     done.stdout, re.MULTILINE), done.stdout
    checks = [line.split()[1] for line in done.stdout.splitlines()[1:]
              if line.split()[:1] in (["ok"], ["warn"], ["FAIL"])]
    assert checks == ["window", "model"], done.stdout  # in doctor's own order
    unknown = home.run("doctor", "model", "windows")
    assert unknown.returncode == 2
    assert unknown.stdout.strip().splitlines() == [
        "ccq doctor: no check named 'windows'; `ccq doctor` knows: "
        + " ".join(check.id for check in load_doctor().checks.CHECKS)]
