"""The checks: one function per row of the troubleshooting table, and how their findings print."""

from __future__ import annotations

import os
import shlex
import stat
import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path

from ccq_doctor.facts import Capture, Facts, ProxyConfig, Upstream
from ccq_doctor.findings import FAIL, OK, WARN, Check, Finding, reprovision, restart_command
from ccq_doctor.machine import HttpResult, Process
from ccq_doctor.parsing import (
    CALLBACK_SETTING,
    PROXY_VARS,
    ROUTING_VARS,
    SMALL_FAST_VARS,
    fingerprint,
    format_duration,
    loopback_captured_by,
    mask_secrets,
    option_value,
    replacement_for,
    runs_litellm,
    version_satisfies,
    version_tuple,
)
from ccq_doctor.service_managers import ServiceState


def _proxy_down(facts: Facts) -> Finding | None:
    """A warning for checks that need the running proxy when it is not up."""
    if facts.health.ok:
        return None
    return Finding(WARN, f"not checked: nothing answers on 127.0.0.1:{facts.ccq_port()} (see service, port)")


def check_shell(facts: Facts) -> Finding:
    capture: Capture = facts.capture
    if capture.ok:
        return Finding(OK, f"a new {capture.source} defines ccq, which runs claude --model {capture.alias}")
    rc = facts.settings.paths["shell_functions"]
    return Finding(FAIL, f"{capture.error}; checked {rc} directly instead",
                   reprovision(facts, "it adds the marked block that loads ccq to ~/.bashrc and ~/.zshrc; "
                                      "then open a new shell"))


def check_service(facts: Facts) -> Finding:
    return facts.manager.service_finding(facts)


def check_port(facts: Facts) -> Finding:
    port = facts.ccq_port()
    settings = facts.settings
    service: ServiceState = facts.service
    unit_port = option_value(facts.manager.unit_command(service), "--port")
    provisioned = facts.provisioned_port()
    mismatch = ""
    if unit_port and unit_port != str(port):
        mismatch = f"the unit starts the proxy with --port {unit_port} but ccq uses {port}"
    elif provisioned and provisioned != port:
        # doctor asks the proxy where the provisioning runs it (doctor.json's health URL).
        mismatch = f"the provisioning runs the proxy on port {provisioned} but ccq uses {port}"
    if facts.health.ok and not mismatch:
        return Finding(OK, f"the proxy answers on 127.0.0.1:{port}, the port ccq uses")
    process: Process | None = facts.proxy_process
    own = sorted({str(entry) for entry in facts.proxy_listeners})
    taken = [entry for entry in facts.listeners if entry.port == port]
    fix = reprovision(facts, f"it writes ccq_proxy_port ({settings.port}) into both the unit and ccq; "
                              f"then {restart_command(facts)}")
    if facts.health.ok:
        return Finding(FAIL, mismatch + " (the unit changed since the proxy started)", fix)
    if process and own:
        return Finding(FAIL, f"nothing answers on 127.0.0.1:{port}, the port ccq uses; the proxy (pid {process.pid}) "
                             f"listens on {', '.join(own)}" + (f"; {mismatch}" if mismatch else ""), fix)
    if taken:
        return Finding(FAIL, f"127.0.0.1:{port} is held by another program that does not answer as LiteLLM",
                       f"find it with: ss -ltnp 'sport = :{port}'; stop it, or set ccq_proxy_port to a free port and "
                       + reprovision(facts))
    if process:
        return Finding(FAIL, f"the proxy (pid {process.pid}) runs but does not listen on 127.0.0.1:{port} yet "
                             f"(still starting, or stuck)", f"{restart_command(facts)}; then run ccq doctor again")
    if mismatch:
        return Finding(FAIL, mismatch, fix)
    return facts.manager.not_running(f"nothing listens on 127.0.0.1:{port}: the proxy is not running (see service)")


def check_loopback(facts: Facts) -> Finding:
    service: ServiceState = facts.service
    settings = facts.settings
    exposed = sorted({str(entry) for entry in facts.proxy_listeners if not entry.is_loopback})
    exposed += sorted({str(entry) for entry in facts.listeners
                       if entry.port == facts.ccq_port() and not entry.is_loopback} - set(exposed))
    unit_argv = facts.manager.unit_command(service)
    # The launcher's litellm command line is doctor.json's (the role wrote both from one list);
    # a launcher edited since may have lost its --host.
    provisioned_host = option_value(settings.launcher_argv, "--host")
    edited_host = not facts.launcher_as_provisioned() and "--host 127.0.0.1" not in facts.launcher
    fix = reprovision(facts, f"its launcher runs litellm --host 127.0.0.1; then {restart_command(facts)}")
    if exposed:
        return Finding(FAIL, f"the proxy listens beyond loopback on {', '.join(exposed)}: anyone who can reach "
                             f"this machine can use it", fix)
    # A unit that runs litellm itself instead of the launcher (edited by hand, or older).
    if runs_litellm(unit_argv) and option_value(unit_argv, "--host") != "127.0.0.1":
        return Finding(FAIL, f"{settings.unit_path} starts litellm without --host 127.0.0.1 (LiteLLM binds 0.0.0.0 "
                             "by default)", fix)
    if provisioned_host != "127.0.0.1" or (facts.launcher and edited_host):
        return Finding(FAIL, f"the launcher {settings.paths['proxy_launcher']} starts litellm without "
                             "--host 127.0.0.1 (LiteLLM binds 0.0.0.0 by default)", fix)
    if not facts.proxy_listeners:
        return Finding(OK, "the proxy is started with --host 127.0.0.1 (it is not listening now)")
    return Finding(OK, "the proxy listens on 127.0.0.1 only")


def check_auth(facts: Facts) -> Finding:
    settings = facts.settings
    key_file = settings.paths["master_key_file"]
    master_key = facts.master_key
    if not master_key:
        return Finding(FAIL, f"the master key file {key_file} is missing or empty: ccq has nothing to send",
                       reprovision(facts, "it makes a random master key once and keeps it"))
    capture = facts.usable_capture()
    if capture.ok and capture.token_fingerprint != fingerprint(master_key):
        return Finding(FAIL, f"ccq ({capture.source}) sends a token that is not the master key in {key_file} "
                             "(an older ccq, such as the Japanese blog recipe's with sk-local, overrides ccq's)",
                       "remove the other ccq() from your rc files, keep the block marked 'ccq: cc and ccq', "
                       "open a new shell")
    if capture.ok and capture.anthropic_api_key_set:
        return Finding(FAIL, "ANTHROPIC_API_KEY reaches Claude Code under ccq; "
                             "Claude Code prefers it to the proxy's token",
                       reprovision(facts, "ccq unsets ANTHROPIC_API_KEY for its call"))
    down = _proxy_down(facts)
    if down:
        return down
    reply: HttpResult = facts.proxy_models
    if reply.ok:
        return Finding(OK, f"the proxy accepts the master key from {key_file}")
    if reply.status not in (401, 403):
        return Finding(FAIL, f"GET /v1/models with the master key answered {reply.status or reply.error}",
                       f"{restart_command(facts)}; if it persists, see ccq logs")
    env_file = facts.env_file or {}
    process: Process | None = facts.proxy_process
    if env_file.get("LITELLM_MASTER_KEY") and fingerprint(env_file["LITELLM_MASTER_KEY"]) != fingerprint(master_key):
        return Finding(FAIL, f"401 Unauthorized: {settings.paths['proxy_env_file']} holds a different master key "
                             f"than {key_file}",
                       reprovision(facts, "it writes the same key into both and restarts the proxy"))
    stale = ""
    if process and process.environ.get("LITELLM_MASTER_KEY") and \
            process.environ["LITELLM_MASTER_KEY"] != fingerprint(master_key):
        stale = f" (it started {format_duration(process.uptime)} ago, before the key was rotated)"
    return Finding(FAIL, f"401 Unauthorized: the running proxy holds an older master key than {key_file}{stale}",
                   restart_command(facts))


def check_versions(facts: Facts) -> Finding:
    settings = facts.settings
    venv = settings.paths["litellm_venv"]
    versions = facts.versions
    if "litellm" not in versions:
        return Finding(FAIL, f"LiteLLM is not installed in {venv}",
                       reprovision(facts, "it builds LiteLLM's venv from ccq's lock"))
    problems = []
    if versions["litellm"] != settings.litellm_version:
        problems.append(f"litellm {versions['litellm']} (ccq needs {settings.litellm_version})")
    openai = versions.get("openai")
    if openai is None or not version_satisfies(openai, settings.openai_version_spec):
        problems.append(f"openai {openai or 'missing'} outside {settings.openai_version_spec} "
                        "(openai 1.100 breaks LiteLLM 1.74: ImportError ResponseTextConfig)")
    if problems:
        # A pip install by hand would take the venv off the lock (the next provision undoes it):
        # provisioning rebuilds the venv from the lock and restarts the proxy.
        return Finding(FAIL, "LiteLLM's venv has " + "; ".join(problems),
                       reprovision(facts, "it rebuilds LiteLLM's venv from ccq's lock and restarts the proxy"))
    return Finding(OK, f"litellm {versions['litellm']}, openai {openai} (within {settings.openai_version_spec})")


def check_drop_params(facts: Facts) -> Finding:
    service: ServiceState = facts.service
    process: Process | None = facts.proxy_process
    settings = facts.settings
    where = []
    if "--drop_params" in facts.launcher:
        where.append(str(settings.paths["proxy_launcher"]))
    if "--drop_params" in service.unit_file_exec_start:
        where.append(str(settings.unit_path))
    if process and "--drop_params" in process.argv:
        where.append(f"the running proxy (pid {process.pid})")
    if where:
        return Finding(FAIL, "--drop_params in " + ", ".join(where) + ": LiteLLM then drops tools and tool_choice, "
                             "so Claude Code's subagents never start",
                       reprovision(facts, f"its launcher never passes --drop_params; then {restart_command(facts)}"))
    return Finding(OK, "no --drop_params in the launcher, the unit or the running proxy")


def check_callback(facts: Facts) -> Finding:
    settings = facts.settings
    config: ProxyConfig | None = facts.proxy_config
    path = settings.paths["proxy_config"]
    callbacks_file = settings.paths["proxy_callbacks"]
    if config is None:
        return Finding(FAIL, f"{path} is missing", reprovision(facts))
    if CALLBACK_SETTING not in config.callbacks:
        return Finding(FAIL, f"{path} does not load the callback (litellm_settings.callbacks: {CALLBACK_SETTING}): "
                             "Claude Code's thinking/cache_control fields then reach Cerebras and subagents fail",
                       reprovision(facts, f"it rewrites {path.name}; then {restart_command(facts)}"))
    wanted = facts.callback_classes.get(CALLBACK_SETTING) or ""
    loaded = facts.loaded_callbacks()
    if loaded is not None and wanted and wanted in loaded:
        return Finding(OK, f"the running proxy loaded {wanted} ({CALLBACK_SETTING})")
    # The proxy cannot be asked, or did not load it: does the file import in LiteLLM's venv?
    # (This imports LiteLLM itself: seconds.)
    error = facts.callback_import
    python = settings.paths["litellm_venv"] / "bin" / "python"
    details = f" (details: cd {settings.paths['config_dir']} && {python} -c 'import custom_callbacks')"
    if error:
        return Finding(FAIL, f"{callbacks_file} does not load in LiteLLM's venv: {error}",
                       reprovision(facts, "it restores the file and the venv") + details)
    if loaded is not None:
        return Finding(FAIL, f"the running proxy did not load {wanted or CALLBACK_SETTING} "
                             f"(it loaded {', '.join(loaded) or 'nothing'}): "
                             "it started before the callback was configured",
                       restart_command(facts))
    return Finding(OK, f"{path.name} loads {CALLBACK_SETTING}, and it imports in LiteLLM's venv "
                       "(the proxy is not up to ask)")


def _variables_finding(facts: Facts, names: Sequence[str], consequence: str, background: bool = False) -> Finding:
    """Whether ccq sets each of ``names`` to the alias (``background``: to the background alias
    when one is configured)."""
    capture = facts.usable_capture()
    if not capture.ok:
        return Finding(FAIL, f"cannot run ccq to see its environment: {capture.error}",
                       reprovision(facts, "it writes the ccq function"))
    main = capture.alias or facts.settings.model_alias
    alias = (facts.background_alias() if background else "") or main
    which = "the background alias" if alias != main else "the alias"
    wrong = [f"{n} is unset" if n not in capture.env else f"{n}={capture.env[n]}"
             for n in names if capture.env.get(n) != alias]
    if wrong:
        if alias != main and all(capture.env.get(n) in (alias, main) for n in names):
            consequence = f"background calls go to {main} and spend its model's quota"
        return Finding(FAIL, f"under ccq ({capture.source}) " + ", ".join(wrong) + f" instead of {which} {alias}: "
                             + consequence,
                       reprovision(facts, "it writes the ccq function that sets them; then open a new shell"))
    return Finding(OK, f"ccq sets {', '.join(names)} to {which} {alias}")


def check_routing(facts: Facts) -> Finding:
    return _variables_finding(facts, ROUTING_VARS,
                              "subagents ask the proxy for claude-sonnet-*/opus-* (Invalid model name) and never start")


def check_small_fast(facts: Facts) -> Finding:
    return _variables_finding(facts, SMALL_FAST_VARS, "background calls ask for claude-haiku-* and fail at once",
                              background=True)


def check_window(facts: Facts) -> Finding:
    expected = facts.settings.claude_code_environment
    if not expected:
        return Finding(WARN, "doctor.json does not say which window ccq should tell Claude Code "
                             "(an older provisioning)",
                       reprovision(facts))
    capture = facts.usable_capture()
    if not capture.ok:
        return Finding(FAIL, f"cannot run ccq to see its environment: {capture.error}",
                       reprovision(facts, "it writes the ccq function"))
    wrong = [f"{n} is unset" if n not in capture.env else f"{n}={capture.env[n]}"
             for n, value in sorted(expected.items()) if capture.env.get(n) != value]
    window = expected.get("CLAUDE_CODE_MAX_CONTEXT_TOKENS", "?")
    if wrong:
        return Finding(FAIL, f"under ccq ({capture.source}) " + ", ".join(wrong) + f", not the model's limits (a "
                             f"{window}-token window): Claude Code then assumes 1M tokens and compacts only after "
                             "Cerebras refuses a request",
                       reprovision(facts, "it writes the ccq function that sets them; then open a new shell"))
    resume = expected.get("CLAUDE_CODE_RESUME_HINT_COMMAND")
    return Finding(OK, f"ccq tells Claude Code a {window}-token window and "
                       f"{expected.get('CLAUDE_CODE_MAX_OUTPUT_TOKENS', '?')} output tokens"
                       + (f"; resume a session with `{resume} --resume <id>` or `{resume} --continue`"
                          if resume else ""))


def check_alias(facts: Facts) -> Finding:
    alias = facts.ccq_alias()
    background = facts.background_alias()
    aliases = [alias] + ([background] if background else [])
    # How each alias is named in a message: the background one says what asks for it.
    named = {alias: f"'{alias}'", background: f"'{background}' (background calls)"}
    config: ProxyConfig | None = facts.proxy_config
    path = facts.settings.paths["proxy_config"]
    fix = reprovision(facts, "set ccq_model_alias once; it writes the same alias into config.yaml and ccq"
                              + (" (and the background alias, for ccq_background_model)" if background else ""))
    if config is None:
        return Finding(FAIL, f"{path} is missing", fix)
    missing = [a for a in aliases if a not in config.models]
    if missing:
        return Finding(FAIL, f"ccq asks for model {' and '.join(named[a] for a in missing)} but {path.name} names only "
                             f"{', '.join(sorted(config.models)) or 'no model'}: model_not_found", fix)
    reply: HttpResult = facts.proxy_models
    if reply.ok:
        data = reply.json() or {}
        served = [str(m.get("id")) for m in data.get("data", []) if isinstance(m, dict)]
        missing = [a for a in aliases if a not in served]
        if missing:
            return Finding(FAIL, f"{' and '.join(named[a] for a in missing)} {'is' if len(missing) == 1 else 'are'} "
                                 f"in {path.name}, but the running proxy serves only "
                                 f"{', '.join(served) or 'nothing'} (it predates the config)", restart_command(facts))
    listed = " and ".join(f"'{a}'" for a in aliases)
    return Finding(OK, f"{listed} {'is a model_name' if len(aliases) == 1 else 'are model_names'} in {path.name}"
                       + (" and in the running proxy" if reply.ok else ""))


def check_upstream(facts: Facts) -> Finding:
    upstream: Upstream = facts.upstream
    result = upstream.result
    settings = facts.settings
    host = urllib.parse.urlsplit(upstream.url).hostname
    if result.ok:
        return Finding(OK, f"GET {upstream.url} answers 200 ({len(upstream.served)} models)")
    if result.error_kind == "dns":
        return Finding(FAIL, f"cannot resolve {host}: {result.error}",
                       f"check the network/DNS (offline? VPN?); ccq needs to reach {host}")
    if result.error_kind == "tls":
        return Finding(FAIL, f"{host}: {result.error}: a TLS-intercepting (corporate) proxy?",
                       reprovision(facts, "with ccq_extra_ca_certs listing your proxy's CA certificate file(s)"))
    if result.error_kind:
        shell_proxy = [n for n in PROXY_VARS if facts.environ.get(n)]
        if shell_proxy and not facts.service_proxies():
            return Finding(FAIL, f"cannot reach {upstream.url}: {result.error}; your shell uses {shell_proxy[0]} but "
                                 "the proxy service does not see it",
                           f"systemctl --user set-environment {shell_proxy[0]}=<your proxy URL> (or put it in "
                           f"~/.config/environment.d/proxy.conf); then {restart_command(facts)}")
        return Finding(FAIL, f"cannot reach {upstream.url}: {result.error}",
                       f"check the network path to {host} (firewall, VPN, an HTTPS_PROXY the proxy service needs)")
    if result.status in (401, 403):
        return Finding(FAIL, f"Cerebras rejects the API key (HTTP {result.status}) in {settings.paths['api_key_file']}",
                       f"CEREBRAS_API_KEY=<a valid key> {settings.reprovision} "
                       "(or -e ccq_cerebras_api_key=... from a vault)")
    return Finding(FAIL, f"GET {upstream.url} answered HTTP {result.status}",
                   "retry later; if it persists, check https://status.cerebras.ai")


def check_model(facts: Facts) -> Finding:
    upstream: Upstream = facts.upstream
    model = facts.upstream_model()
    background = facts.background_upstream_model()
    settings = facts.settings
    if not upstream.result.ok:
        return Finding(WARN, f"not checked: the upstream's model list is unavailable (see upstream); model {model}"
                             + (f", background model {background}" if background else ""))
    served = upstream.served
    problems, fixes = [], []
    for role, name in (("main", model), ("background", background)):
        if not name or name in served:
            continue
        what = f"the background model {name}" if role == "background" else name
        row = settings.retired_models.get(name)
        replacement = replacement_for(name, settings.retired_models, served) if row is not None else ""
        if row is None:
            problems.append(f"Cerebras does not serve {what} (retired?)")
        else:
            problems.append(f"Cerebras retired {what} in {row.get('retired') or 'the past'}"
                            + (f"; its replacement is {replacement}" if replacement else ""))
        if role == "background":
            fixes.append(f"set ccq_background_model={replacement or '<a served model>'}, or to \"\" to let the main "
                         "model answer Claude Code's background calls")
            continue
        preferred = [m for m in settings.model_preference if m in served]
        if preferred:
            choice = (f"it picks {preferred[0]}, the first of ccq_cerebras_model_preference that is served, when "
                      "ccq_cerebras_model is empty (the default)")
            if replacement and replacement != preferred[0]:
                choice += f"; or pin its replacement with -e ccq_cerebras_model={replacement}"
        elif replacement:
            choice = f"pin its replacement with -e ccq_cerebras_model={replacement}"
        else:
            choice = "pin one of the served models with -e ccq_cerebras_model=<model>"
        fixes.append(choice)
    if problems:
        return Finding(FAIL, "; ".join(problems) + f"; it serves: {', '.join(served) or 'nothing'}",
                       reprovision(facts, "; ".join(fixes)))
    return Finding(OK, f"Cerebras serves {model}" + (f" and the background model {background}" if background else ""))


def check_claude_code(facts: Facts) -> Finding:
    settings = facts.settings
    version = facts.claude_version
    node = facts.node_version
    if version is None:
        return Finding(FAIL, f"claude is not installed ({settings.paths['bin_dir']}/claude)",
                       reprovision(facts, "it installs the pinned Claude Code"))
    if version == "":
        return Finding(FAIL, "claude --version fails", reprovision(facts, "it reinstalls the pinned Claude Code"))
    if node is None or version_tuple(node) < version_tuple(settings.node_min_version):
        return Finding(FAIL, f"Node.js {node or 'is missing'}; ccq needs >= {settings.node_min_version} (npm installs "
                             "and updates Claude Code)",
                       reprovision(facts, "it installs Node.js from the distribution"))
    if settings.claude_code_version and version != settings.claude_code_version:
        return Finding(WARN, f"Claude Code {version}, but ccq was tested with {settings.claude_code_version}: new "
                             "request fields may need a newer callback",
                       reprovision(facts, "it installs the tested version"))
    return Finding(OK, f"Claude Code {version}, Node.js {node}")


def _mode_problem(path: Path) -> str | None:
    try:
        info = path.stat()
    except OSError:
        return None
    problems = []
    if info.st_mode & 0o077:
        problems.append(f"mode {stat.S_IMODE(info.st_mode):04o}")
    if info.st_uid != os.getuid():
        problems.append(f"owner uid {info.st_uid}")
    return ", ".join(problems) or None


def check_file_modes(facts: Facts) -> Finding:
    paths = facts.settings.paths
    loose, commands = [], []
    for name, is_dir in (("secrets_dir", True), ("config_dir", True), ("state_dir", True), ("api_key_file", False),
                         ("master_key_file", False), ("proxy_env_file", False), ("proxy_log", False)):
        problem = _mode_problem(paths[name])
        if problem:
            loose.append(f"{paths[name]} ({problem})")
            commands.append(f"chmod {'700' if is_dir else '600'} {shlex.quote(str(paths[name]))}")
    if loose:
        return Finding(FAIL, "other accounts can read or own ccq's private files: " + "; ".join(loose),
                       "; ".join(commands))
    return Finding(OK, "key files and the environment file are 0600 in 0700 directories, owned by you")


def check_proxy_env(facts: Facts) -> Finding:
    capture = facts.usable_capture()
    fix = ("add 127.0.0.1,localhost to NO_PROXY for Claude Code: " +
           reprovision(facts, "ccq appends them to your NO_PROXY for its call") + "; then open a new shell")
    if capture.ok:
        captured = loopback_captured_by(capture.env)
        if captured:
            value = capture.env.get("NO_PROXY") or capture.env.get("no_proxy") or "unset"
            return Finding(FAIL, f"under ccq {', '.join(captured)} is set and NO_PROXY ({value}) lacks 127.0.0.1: "
                                 "Claude Code sends the proxy's requests to that proxy (Connection error)", fix)
    shell_captured = loopback_captured_by(facts.environ)
    if shell_captured:
        return Finding(WARN, f"your shell sets {', '.join(shell_captured)} without 127.0.0.1 in NO_PROXY: ccq exempts "
                             "loopback itself, but curl and other clients of the proxy would go through that proxy",
                       "export NO_PROXY=\"${NO_PROXY:+$NO_PROXY,}127.0.0.1,localhost\" in your rc file")
    return Finding(OK, "no HTTP(S)_PROXY captures 127.0.0.1" + (" (ccq exempts it)" if capture.ok and any(
        capture.env.get(n) for n in PROXY_VARS) else ""))


def check_restart(facts: Facts) -> Finding:
    process: Process | None = facts.proxy_process
    if process is None:
        return Finding(OK, "nothing to restart (the proxy is not running)")
    paths = facts.settings.paths
    candidates = [paths["proxy_config"], paths["proxy_callbacks"], paths["proxy_env_file"], paths["master_key_file"],
                  paths["proxy_launcher"]]
    candidates += facts.manager.unit_files()
    service: ServiceState = facts.service
    newer = []
    for path in candidates:
        try:
            if path.stat().st_mtime > process.started + 1:
                newer.append(path.name)
        except OSError:
            continue
    if newer or service.need_reload:
        what = ", ".join(newer) + (" (unit not reloaded)" if service.need_reload else "")
        fix = ("systemctl --user daemon-reload && " if service.need_reload else "") + restart_command(facts)
        return Finding(WARN, f"changed since the proxy started: {what}; the running proxy does not use it yet", fix)
    return Finding(OK, f"the running proxy (up {format_duration(process.uptime)}) uses the current files")


CHECKS: tuple[Check, ...] = (
    Check("shell", "`ccq: command not found`, or ccq behaves like an older setup",
          "a new bash/zsh defines `ccq` from the marked block in ~/.bashrc / ~/.zshrc",
          "re-run the provisioning, open a new shell", check_shell),
    Check("service", "`Connection error` / `fetch failed`",
          "the proxy's systemd user unit (launchd agent on macOS) is enabled, running and not crash-looping "
          "(its last error lines); without either, ccq's pidfile and log",
          "the start command doctor prints (`systemctl --user enable --now <unit>`); the error lines say why it stops",
          check_service),
    Check("port", "`Connection error` / `fetch failed`",
          "/health/liveliness answers on the port ccq uses; if not, which port the proxy listens on",
          "re-run the provisioning: one `ccq_proxy_port` for the unit and ccq", check_port),
    Check("loopback", "anyone on your network can spend your key",
          "the proxy listens on 127.0.0.1 only (`--host 127.0.0.1`; LiteLLM's default is 0.0.0.0)",
          "re-run the provisioning, restart the proxy", check_loopback),
    Check("auth", "`401 Unauthorized`",
          "the running proxy accepts the master key ccq sends (a rotated key needs a restart); "
          "ANTHROPIC_API_KEY does not reach Claude Code",
          "restart the proxy (doctor prints the command)", check_auth),
    Check("versions", "`ImportError: ResponseTextConfig` (the proxy dies at start)",
          "litellm and openai in LiteLLM's venv are the pinned versions (`ccq_litellm_version`, "
          "`ccq_openai_version_spec`)",
          "re-run the provisioning (it rebuilds LiteLLM's venv from ccq's lock and restarts the proxy)",
          check_versions),
    Check("drop-params", "subagents never start (tools silently dropped)",
          "no `--drop_params` in the unit, the running proxy or ccq's on-demand start",
          "re-run the provisioning, restart the proxy", check_drop_params),
    Check("callback", "subagents never start; `UnsupportedParamsError: ['thinking']`",
          "config.yaml loads `custom_callbacks.proxy_handler_instance`, the running proxy loaded it "
          "(/health/readiness), or else the file imports in LiteLLM's venv",
          "re-run the provisioning, restart the proxy", check_callback),
    Check("routing", "subagents never start: `Invalid model name` claude-sonnet-*",
          "under ccq, ANTHROPIC_DEFAULT_SONNET_MODEL, ANTHROPIC_DEFAULT_OPUS_MODEL and CLAUDE_CODE_SUBAGENT_MODEL "
          "are the alias", "re-run the provisioning, open a new shell", check_routing),
    Check("small-fast", "background calls fail at once, or spend the main model's quota",
          "under ccq, ANTHROPIC_SMALL_FAST_MODEL and ANTHROPIC_DEFAULT_HAIKU_MODEL are the background alias when "
          "`ccq_background_model` is set, else the alias",
          "re-run the provisioning, open a new shell", check_small_fast),
    Check("window", "Claude Code says it assumes a context window of 1m tokens; "
          "`Please reduce the length of the messages`",
          "under ccq, CLAUDE_CODE_MAX_CONTEXT_TOKENS, the output limit and the tool-output caps are the model "
          "table's for the configured model and tier",
          "re-run the provisioning, open a new shell", check_window),
    Check("alias", "`model_not_found` / `Invalid model name` for the alias",
          "the alias ccq passes (`--model`), and the background alias when `ccq_background_model` is set, are "
          "model_names in config.yaml and in the running proxy",
          "set `ccq_model_alias`, re-run the provisioning", check_alias),
    Check("upstream", "`APIConnectionError`, `CERTIFICATE_VERIFY_FAILED`, 401 from Cerebras",
          "GET {api_base}/models with the Cerebras key: DNS, TLS, HTTP status",
          "fix the network; `ccq_extra_ca_certs` behind a TLS-intercepting proxy; a valid key", check_upstream),
    Check("model", "`model_not_found` / 404 from Cerebras",
          "Cerebras still serves the configured model and the background model; for a retired one, names its "
          "replacement from ccq's model table; lists what it serves",
          "leave `ccq_cerebras_model` empty to pick from `ccq_cerebras_model_preference` (or set "
          "`ccq_background_model` to the replacement), re-run the provisioning",
          check_model),
    Check("claude-code", "odd failures after a Claude Code update",
          "`claude --version` is the tested pin (`ccq_claude_code_version`); Node.js is as new as it needs",
          "re-run the provisioning", check_claude_code),
    Check("file-modes", "other accounts can read your keys",
          "key files and the EnvironmentFile are 0600, their directories 0700, all owned by you",
          "the `chmod` doctor prints", check_file_modes),
    Check("proxy-env", "`Connection error` behind a corporate proxy",
          "with HTTP(S)_PROXY set, NO_PROXY under ccq exempts 127.0.0.1",
          "re-run the provisioning (ccq adds 127.0.0.1,localhost), open a new shell", check_proxy_env),
    Check("restart", "a change has no effect",
          "config.yaml, the callback, the keys and the unit are not newer than the running proxy",
          "restart the proxy (doctor prints the command)", check_restart),
)


def run_checks(facts: Facts, checks: Sequence[Check] = CHECKS) -> list[tuple[Check, Finding]]:
    """Every check's finding; a check that crashes is itself a failure, never a traceback."""
    results = []
    for check in checks:
        try:
            finding = check.run(facts)
        except Exception as exc:  # noqa: BLE001 - doctor must report, not crash
            finding = Finding(FAIL, f"the check itself failed: {type(exc).__name__}: {exc}",
                              "report this as a ccq bug, with the line above")
        results.append((check, finding))
    return results


def format_findings(results: Sequence[tuple[Check, Finding]], secrets: Iterable[str] = ()) -> list[str]:
    """Output lines: one status line per check, then its detail and fix lines, masked."""
    secrets = list(secrets)
    width = max(len(check.id) for check, _ in results) if results else 0
    lines = []
    for check, finding in results:
        lines.append(f"{finding.status:<4}  {check.id:<{width}}  {finding.message}")
        lines.extend(f"{'':4}  {'':{width}}  | {detail}" for detail in finding.details)
        if finding.fix and finding.status != OK:
            lines.append(f"{'':4}  {'':{width}}  fix: {finding.fix}")
    counts = {status: sum(1 for _, f in results if f.status == status) for status in (FAIL, WARN, OK)}
    lines.append(f"{counts[FAIL]} failed, {counts[WARN]} warnings, {counts[OK]} ok")
    return [mask_secrets(line, secrets) for line in lines]


def markdown_table(checks: Sequence[Check] = CHECKS) -> str:
    """The troubleshooting table (docs/troubleshooting.md), one row per doctor check."""
    rows = ["| doctor check | symptom | what it verifies | fix |", "|---|---|---|---|"]
    rows += [f"| `{c.id}` | {c.symptom} | {c.looks_at} | {c.fix} |" for c in checks]
    return "\n".join(rows) + "\n"
