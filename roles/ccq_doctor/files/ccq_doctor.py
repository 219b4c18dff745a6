#!/usr/bin/env python3
"""ccq doctor, status and logs: name what is wrong with a ccq setup, and the exact fix.

Deployed verbatim by roles/ccq_doctor (to ~/.local/share/ccq/ccq_doctor.py) and run by the
ccq shell function (``ccq doctor``, ``ccq status``, ``ccq logs``) or, for a fleet, by
playbooks/doctor.yml.  Stdlib only, Python >= 3.9: it runs with the machine's own python3,
outside LiteLLM's venv, because a broken venv is one of the things it diagnoses.

Its settings come from ~/.config/ccq/doctor.json, which the role writes from the same
variables that built the proxy. Doctor has no defaults of its own: without that file, or with a
field missing from it, it says so in one line and stops.

Secrets: the Cerebras key and the proxy's master key are read from their files into memory.
They go into HTTP headers only, never onto a command line, and every line this script prints
passes through :func:`mask_secrets`.

``doctor`` prints one line per check (``ok``, ``warn`` or ``FAIL``), each failure followed by
the fix, and exits 1 when any check failed.  The checks are :data:`CHECKS`; the README's
troubleshooting table is rendered from that list (``ccq_doctor.py checks --markdown``) and a
unit test keeps the two equal.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import ipaddress
import json
import math
import os
import pwd
import re
import shlex
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any, Optional

OK, WARN, FAIL = "ok", "warn", "FAIL"
_SEVERITY = {OK: 0, WARN: 1, FAIL: 2}

# Where doctor.json is (ccq_layout's doctor_config), relative to the account's home: the ccq
# shell function runs doctor without --config, and the location of the settings cannot come
# from the settings. Every other path comes from doctor.json.
DEFAULT_SETTINGS_FILE = ".config/ccq/doctor.json"
# The entries of doctor.json's paths (ccq_layout) this script reads.
PATHS_READ = ("secrets_dir", "api_key_file", "master_key_file", "config_dir", "proxy_config", "proxy_callbacks",
              "proxy_env_file", "shell_functions", "state_dir", "proxy_log", "proxy_pidfile", "proxy_launcher",
              "quota_state", "bin_dir", "litellm_venv", "unit_dir", "launchd_log")

# Claude Code's model roles.  Without the first group, subagents ask the proxy for
# claude-sonnet-* ("Invalid model name"); without the second, background calls (titles,
# summaries) ask for claude-haiku-* and fail at once.
ROUTING_VARS = ("ANTHROPIC_DEFAULT_SONNET_MODEL", "ANTHROPIC_DEFAULT_OPUS_MODEL", "CLAUDE_CODE_SUBAGENT_MODEL")
SMALL_FAST_VARS = ("ANTHROPIC_SMALL_FAST_MODEL", "ANTHROPIC_DEFAULT_HAIKU_MODEL")
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
NO_PROXY_VARS = ("NO_PROXY", "no_proxy")
CAPTURED_VARS = ("ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL") + SMALL_FAST_VARS + ROUTING_VARS + PROXY_VARS + NO_PROXY_VARS
# Variables of the proxy's environment file that hold secrets: never printed, never passed on.
SECRET_ENV_NAMES = ("CEREBRAS_API_KEY", "LITELLM_MASTER_KEY")
CALLBACK_SETTING = "custom_callbacks.proxy_handler_instance"
NO_SHELL_FUNCTION = 97  # exit status of the capture script when the shell has no ccq


# ---------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------

@dataclass
class Settings:
    """What the provisioning intended: ports, names, versions and file locations."""

    # Without a default: doctor.json must hold them (roles/ccq_doctor writes every one).
    home: Path
    user: str
    paths: dict[str, Path]
    port: int
    model_alias: str
    api_base: str
    model_preference: list[str]
    service_name: str
    litellm_version: str
    openai_version_spec: str
    node_min_version: str
    reprovision: str
    # The rest may be empty, which means what each comment says.
    # Empty: read from the proxy's config.yaml.
    upstream_model: str = ""
    # Empty: not compared.
    claude_code_version: str = ""
    # None: detect (systemd when /run/systemd/system exists).
    service_manager: Optional[str] = None
    # What ccq tells Claude Code about the model (variable: value), from the model table.
    claude_code_environment: dict[str, str] = field(default_factory=dict)
    # The alias of Claude Code's background (haiku-class) calls and its Cerebras model, when
    # ccq_background_model is set; "" when the main alias answers them too.
    background_model_alias: str = ""
    background_model: str = ""
    # Models Cerebras no longer serves: {model: {"retired": date, "replacement": model}}.
    retired_models: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def unit_path(self) -> Path:
        return self.paths["unit_dir"] / f"{self.service_name}.service"

    @property
    def unit(self) -> str:
        return f"{self.service_name}.service"


class SettingsError(Exception):
    """doctor.json is missing, unreadable or incomplete: the one line that says so and what to do."""


# The command named when doctor.json cannot name it (its reprovision field, from
# ccq_doctor_reprovision_command): the README's, as help text; it is no setting doctor acts on.
REPROVISION_HINT = "make provision"


def required_settings() -> list[str]:
    """The Settings fields without a default, in their order: the ones doctor.json must hold."""
    return [f.name for f in fields(Settings) if f.default is MISSING and f.default_factory is MISSING]


def settings_from(data: Mapping[str, Any]) -> Settings:
    """Settings from doctor.json's content; SettingsError names the first field it lacks."""
    lacking = [name for name in required_settings() if data.get(name) in (None, "")]
    if not lacking:
        paths = data["paths"] if isinstance(data["paths"], dict) else {}
        lacking = [f"paths.{name}" for name in PATHS_READ if not paths.get(name)]
    if lacking:
        raise SettingsError(f"lacks {lacking[0]}")
    known = {f.name for f in fields(Settings)}
    values = {name: value for name, value in data.items() if name in known and value is not None}
    try:
        values["port"] = int(values["port"])
    except (TypeError, ValueError):
        raise SettingsError(f"has a port that is not a number ({values['port']!r})") from None
    values["home"] = Path(values["home"])
    values["paths"] = {name: Path(value) for name, value in values["paths"].items()}
    values["claude_code_environment"] = {str(k): str(v) for k, v in (values.get("claude_code_environment") or {}).items()}
    for name in ("background_model_alias", "background_model"):
        values[name] = str(values.get(name, ""))
    retired = values.get("retired_models")
    values["retired_models"] = {str(model): {k: str(v) for k, v in row.items() if v is not None}
                                for model, row in (retired.items() if isinstance(retired, dict) else ())
                                if isinstance(row, dict)}
    return Settings(**values)


def load_settings(path: Optional[Path], environ: Mapping[str, str] = os.environ) -> Settings:
    """Settings from doctor.json (written by roles/ccq_doctor); SettingsError when it is missing,
    unreadable or lacks a field, with the fix."""
    home = Path(environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir)
    settings_file = path or home / DEFAULT_SETTINGS_FILE
    data: Any = None
    try:
        data = json.loads(settings_file.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise SettingsError("is not a JSON object")
        return settings_from(data)
    except SettingsError as exc:
        problem = str(exc)
    except FileNotFoundError:
        problem = "is missing"
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror or exc})"
    except ValueError as exc:
        problem = f"is not valid JSON ({exc})"
    command = data.get("reprovision") if isinstance(data, dict) else None
    raise SettingsError(f"{settings_file} {problem}: re-run the provisioning "
                        f"({command if isinstance(command, str) and command else REPROVISION_HINT}), which writes it")


# ---------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------

_KEY_LIKE = re.compile(r"\b((?:sk|csk)-)[A-Za-z0-9_\-]{6,}")
_BEARER = re.compile(r"(?i)(\bbearer\s+)[^\s'\",]+")
_ASSIGNED_SECRET = re.compile(
    r"(?i)((?:api[_-]?key|master[_-]?key|auth[_-]?token|authorization|password|secret)['\"]?\s*[:=]\s*['\"]?)"
    r"(?!\*\*\*)[^\s'\",}]+")
_URL_CREDENTIALS = re.compile(r"(://)[^/\s:@]+:[^/\s@]+@")


def mask_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret and anything shaped like a key replaced by ``***``.

    Known values (the keys read from their files) go first; the patterns catch keys doctor
    never saw (an old key in a log line, a bearer header, credentials inside a proxy URL).
    """
    for secret in sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _KEY_LIKE.sub(r"\1***", text)
    text = _BEARER.sub(r"\1***", text)
    text = _ASSIGNED_SECRET.sub(r"\1***", text)
    return _URL_CREDENTIALS.sub(r"\1***@", text)


def fingerprint(secret: Optional[str]) -> Optional[str]:
    """A comparable stand-in for a secret; the secret itself is never kept or shown."""
    return hashlib.sha256(secret.encode()).hexdigest() if secret else None


def version_tuple(version: str) -> tuple[int, ...]:
    """The release numbers of a version string: "1.74.0.post2" -> (1, 74, 0), "v18.19.0" -> (18, 19, 0)."""
    match = re.match(r"v?(\d+(?:\.\d+)*)", version.strip())
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def _padded(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)), b + (0,) * (width - len(b))


def version_satisfies(version: str, spec: str) -> bool:
    """Whether ``version`` meets a pip-style ``spec`` such as ">=1.99.1,<1.100.0".

    Only the comparison operators ccq's pins use; ``==`` compares the whole string, so
    "1.74.0.post2" differs from "1.74.0".
    """
    have = version_tuple(version)
    if not have:
        return False
    for clause in (c.strip() for c in spec.split(",") if c.strip()):
        match = re.fullmatch(r"(>=|<=|==|!=|>|<)\s*(\S+)", clause)
        if not match:
            raise ValueError(f"unsupported version clause {clause!r}")
        op, wanted = match.groups()
        if op in ("==", "!="):
            if (version.strip() == wanted) != (op == "=="):
                return False
            continue
        a, b = _padded(have, version_tuple(wanted))
        if not {">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b}[op]:
            return False
    return True


def no_proxy_exempts_loopback(no_proxy: str) -> bool:
    """Whether a NO_PROXY value keeps requests to 127.0.0.1 away from HTTP(S)_PROXY.

    Clients match NO_PROXY against the URL's host as written, and ccq's ANTHROPIC_BASE_URL
    says 127.0.0.1: "localhost" alone does not exempt it.
    """
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if entry in ("*", "127.0.0.1"):
            return True
        if "/" in entry:
            try:
                if ipaddress.ip_address("127.0.0.1") in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def loopback_captured_by(environment: Mapping[str, str]) -> list[str]:
    """Proxy variables in ``environment`` that would carry requests for 127.0.0.1."""
    set_proxies = [name for name in PROXY_VARS if environment.get(name)]
    exempt = any(no_proxy_exempts_loopback(environment.get(name, "")) for name in NO_PROXY_VARS)
    return [] if exempt else set_proxies


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines of a systemd EnvironmentFile / shell env file (quotes stripped)."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        if key.startswith("export "):
            key = key[len("export "):].strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key] = value
    return env


def parse_launchctl_print(text: str) -> dict[str, str]:
    """The top-level ``key = value`` lines of ``launchctl print <domain>/<label>``."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"^\t([a-z][a-z ]*?) = (.*)$", line)
        if match and match.group(1) not in values:
            values[match.group(1)] = match.group(2).strip()
    return values


def parse_systemctl_show(text: str) -> dict[str, str]:
    """``systemctl show`` output (Key=Value lines) as a dict."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def exec_start_argv(value: str) -> list[str]:
    """The argv inside systemctl's ExecStart property ("{ path=... ; argv[]=... ; ... }")."""
    match = re.search(r"argv\[\]=(.*?) ; ", value)
    return match.group(1).split() if match else value.split()


def unit_exec_start(text: str) -> list[str]:
    """The argv of the (last) ExecStart= line of a unit file, line continuations joined."""
    joined = re.sub(r"\\\n", " ", text)
    argv: list[str] = []
    for line in joined.splitlines():
        line = line.strip()
        if line.startswith("ExecStart="):
            value = line[len("ExecStart="):].lstrip("-@:+!")
            argv = shlex.split(value) if value else []
    return argv


def option_value(argv: Sequence[str], option: str) -> Optional[str]:
    """The value of ``--option value`` or ``--option=value`` in argv."""
    for i, arg in enumerate(argv):
        if arg == option and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None


def _hex_address(hex_addr: str) -> str:
    """An address from /proc/net/tcp{,6}: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_addr)
    swapped = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(swapped))


@dataclass(frozen=True)
class Listener:
    """A listening TCP socket."""

    address: str
    port: int
    inode: int

    @property
    def is_loopback(self) -> bool:
        addr = ipaddress.ip_address(self.address)
        mapped = getattr(addr, "ipv4_mapped", None)
        return addr.is_loopback or bool(mapped and mapped.is_loopback)

    def __str__(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"


def parse_proc_net_tcp(text: str) -> list[Listener]:
    """Listening sockets (state 0A) of a /proc/net/tcp or /proc/net/tcp6 table."""
    listeners = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != "0A":
            continue
        addr_hex, port_hex = fields[1].split(":")
        listeners.append(Listener(_hex_address(addr_hex), int(port_hex, 16), int(fields[9])))
    return listeners


_ERROR_LINE = re.compile(r"Traceback|Error|Exception|error:|ERROR|CRITICAL|failed|Failed|refused")


# The launcher writes this line to its output (the proxy log, for an on-demand start) before
# each start; what follows the last one is that start's output. uvicorn's line says the start itself succeeded.
ON_DEMAND_START_MARKER = "ccq: starting the proxy at "
_STARTED_LINE = re.compile(r"Uvicorn running on |Application startup complete")


def last_start(lines: Sequence[str]) -> tuple[list[str], bool]:
    """The lines of the last on-demand start (all lines when there is no marker), and whether
    that start got as far as serving."""
    starts = [index for index, line in enumerate(lines) if ON_DEMAND_START_MARKER in line]
    since = list(lines[starts[-1] + 1:] if starts else lines)
    return since, any(_STARTED_LINE.search(line) for line in since)


def last_error_lines(lines: Sequence[str], count: int = 6) -> list[str]:
    """The last ``count`` lines that look like an error, in order (a traceback's last line first of all)."""
    return [line.rstrip() for line in lines if _ERROR_LINE.search(line)][-count:]


def shell_code(text: str) -> str:
    """A shell script without its comments (the launcher says "Never --drop_params" in one)."""
    return "\n".join(re.sub(r"(^|\s)#.*", "", line) for line in text.splitlines())


def runs_litellm(argv: Sequence[str]) -> bool:
    """Whether a command line runs LiteLLM itself (not a script that starts it)."""
    return any(Path(arg).name in ("litellm", "litellm-proxy") for arg in argv[:3])


def launcher_litellm_argv(text: str) -> list[str]:
    """The litellm command line in the launcher script (roles/litellm_service's ccq-proxy, the
    one place it is written), from the litellm executable on; [] when the script has none."""
    for line in shell_code(re.sub(r"\\\n", " ", text)).splitlines():
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        for index, word in enumerate(words):
            if Path(word).name in ("litellm", "litellm-proxy"):
                return words[index:]
    return []


def format_duration(seconds: float) -> str:
    """3725 -> "1h 2m"; 59 -> "59s"."""
    seconds = int(max(seconds, 0))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def replacement_for(model: str, retired: Mapping[str, Mapping[str, str]], served: Iterable[str] = ()) -> str:
    """What to use instead of the retired ``model``: its replacement, following replacements
    that were retired in turn (zai-glm-4.6 -> zai-glm-4.7 -> gpt-oss-120b). The first model of
    that chain the upstream serves wins; else its end, when that is not retired; else ""."""
    chain: list[str] = []
    current = model
    while current in retired:
        following = str(retired[current].get("replacement") or "")
        if not following or following == model or following in chain:
            break
        chain.append(following)
        current = following
    served_now = set(served)
    for candidate in chain:
        if candidate in served_now:
            return candidate
    return chain[-1] if chain and chain[-1] not in retired else ""


def _ago(seconds: float) -> str:
    """12 -> "12 s ago"; 130 -> "2 min ago"."""
    seconds = int(max(seconds, 0))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _figure(entry: Mapping[str, Any], name: str) -> Optional[float]:
    value = entry.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} is {value!r}")
    return float(value)


def _quota_part(entry: Mapping[str, Any], kind: str, now: float, seen: Optional[float]) -> str:
    """One model's token (per minute) or request (per day) figures, as `ccq status` says them."""
    prefix, unit, period, span = {"tokens": ("tokens", "tokens", "this minute", 60.0),
                                  "requests": ("requests_day", "requests", "today", 86400.0)}[kind]
    limit = _figure(entry, f"{prefix}_limit")
    remaining = _figure(entry, f"{prefix}_remaining")
    reset_at = _figure(entry, f"{prefix}_reset_at")
    if remaining is None:
        return ""
    if reset_at is None and seen is not None:
        reset_at = seen + span  # a per-minute (per-day) figure is stale after its minute (day)
    if reset_at is not None and now >= reset_at:
        window = "the minute's" if kind == "tokens" else "the day's"
        size = f" of {int(limit):,} {unit}" if limit is not None else ""
        return f"{window} quota{size} is full again"
    of = f" of {int(limit):,}" if limit is not None else ""
    return f"{int(remaining):,}{of} {unit} left {period}"


def quota_lines(path: Path, first: Sequence[str] = (), now: Optional[float] = None) -> list[str]:
    """What the proxy last heard of Cerebras' rate limits (its quota state file), one line per
    model, the models in ``first`` (those ccq uses) leading. Never raises."""
    now = time.time() if now is None else now
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ["no answer from Cerebras recorded yet"]
    except (OSError, UnicodeDecodeError) as exc:
        return [f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"]
    try:
        data = json.loads(raw)
        models = data.get("models") if isinstance(data, dict) else None
        if not isinstance(models, dict) or not all(isinstance(e, dict) for e in models.values()):
            raise ValueError("no models table")
        if not models:
            return ["no answer from Cerebras recorded yet"]
        order = [m for m in first if m in models] + sorted(m for m in models if m not in first)
        lines = []
        for model in order:
            entry = models[model]
            seen = _figure(entry, "seen_at")
            parts = [p for p in (_quota_part(entry, "tokens", now, seen), _quota_part(entry, "requests", now, seen)) if p]
            if not parts:
                parts = ["no rate-limit figures in its last answer"]
            if seen is not None:
                parts[0] += f" ({_ago(now - seen)})"
            lines.append(f"{model}: " + ", ".join(parts))
        return lines
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        return [f"{path} is garbled ({exc}); the proxy rewrites it after its next answer from Cerebras"]


def share_lines(path: Path) -> list[str]:
    """What each kind of upstream request (the work, auto mode's checks) has cost since the proxy
    started, from its quota state file: the requests and the tokens they reserved against
    Cerebras' quota. [] when nothing is recorded; never raises."""
    try:
        purposes = json.loads(path.read_text(encoding="utf-8")).get("purposes")
        if not isinstance(purposes, dict) or not purposes:
            return []
        total_requests = sum(int(p["requests"]) for p in purposes.values())
        total_tokens = sum(int(p["tokens"]) for p in purposes.values())
        lines = []
        for name in sorted(purposes, key=lambda n: (n != "work", n)):
            requests, tokens = int(purposes[name]["requests"]), int(purposes[name]["tokens"])
            percent = f" ({100 * tokens // total_tokens}%)" if total_tokens else ""
            lines.append(f"{name}: {requests:,} of {total_requests:,} requests, {tokens:,} of {total_tokens:,} "
                         f"tokens reserved{percent} since the proxy started")
        return lines
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return []


def repair_lines(path: Path) -> list[str]:
    """Tool calls whose arguments the proxy repaired or refused since it started (its quota state
    file's counters, from the wire writer); [] when there were none; never raises."""
    try:
        counters = json.loads(path.read_text(encoding="utf-8")).get("counters") or {}
        repaired = int(counters.get("tool_arguments_repaired", 0))
        refused = int(counters.get("tool_arguments_unrepairable", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return []
    if not repaired and not refused:
        return []
    return [f"{repaired:,} tool call(s) with broken JSON arguments repaired, {refused:,} refused "
            "(Claude Code retried them) since the proxy started"]


def _yaml_scalar(value: str) -> str:
    value = value.split(" #", 1)[0].strip()
    if value.startswith('"'):
        try:
            return str(json.loads(value))
        except ValueError:
            return value.strip('"')
    return value.strip("'")


@dataclass
class ProxyConfig:
    """What doctor needs from LiteLLM's config.yaml."""

    models: dict[str, dict[str, str]] = field(default_factory=dict)  # model_name -> litellm_params
    callbacks: list[str] = field(default_factory=list)

    def upstream_model(self, alias: str) -> str:
        """The model id at the provider for ``alias`` ("cerebras/x" -> "x")."""
        model = self.models.get(alias, {}).get("model", "")
        return model.split("/", 1)[1] if "/" in model else model


# The litellm_params doctor reads (both readers below read exactly these).
MODEL_PARAMS_READ = ("model", "api_base", "api_key")


def proxy_config_from_data(data: Any) -> ProxyConfig:
    """ProxyConfig from config.yaml already parsed into Python data."""
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


def parse_proxy_config(text: str) -> ProxyConfig:
    """A small reader for the config.yaml shapes ccq writes, for when no YAML parser exists.

    It knows ``model_list`` entries (model_name, litellm_params.model/api_base) and
    ``litellm_settings.callbacks`` as a scalar, a flow list or a block list.
    """
    config = ProxyConfig()
    section = ""
    current: Optional[str] = None
    in_callbacks = False
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        indent = len(raw) - len(raw.lstrip())
        line = raw.strip()
        if indent == 0:
            section = line.split(":", 1)[0]
            in_callbacks = False
            continue
        if section == "model_list":
            match = re.match(r"(?:-\s+)?model_name:\s*(.+)", line)
            if match:
                current = _yaml_scalar(match.group(1))
                config.models[current] = {}
                continue
            match = re.match(r"(%s):\s*(.+)" % "|".join(MODEL_PARAMS_READ), line)
            if match and current is not None:
                config.models[current][match.group(1)] = _yaml_scalar(match.group(2))
        elif section == "litellm_settings":
            if in_callbacks and line.startswith("- "):
                config.callbacks.append(_yaml_scalar(line[2:]))
                continue
            in_callbacks = False
            match = re.match(r"callbacks:\s*(.*)", line)
            if match:
                value = match.group(1).split(" #", 1)[0].strip()
                if value.startswith("["):
                    config.callbacks = [_yaml_scalar(v) for v in value.strip("[]").split(",") if v.strip()]
                elif value:
                    config.callbacks = [_yaml_scalar(value)]
                else:
                    in_callbacks = True
    return config


# ---------------------------------------------------------------------------------------
# Talking to the machine
# ---------------------------------------------------------------------------------------

@dataclass
class HttpResult:
    """The outcome of one GET: a status, or the kind of network failure."""

    status: Optional[int] = None
    body: bytes = b""
    error_kind: str = ""  # dns | tls | refused | timeout | network
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def classify_network_error(exc: BaseException) -> tuple[str, str]:
    """(kind, text) for an exception urllib raised while connecting."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, socket.gaierror):
        return "dns", f"name resolution failed ({reason.strerror or reason})"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return "tls", f"TLS certificate not trusted ({getattr(reason, 'verify_message', None) or reason})"
    if isinstance(reason, ssl.SSLError):
        return "tls", f"TLS handshake failed ({reason})"
    if isinstance(reason, ConnectionRefusedError):
        return "refused", "connection refused"
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timeout", "timed out"
    return "network", str(reason)


def http_get(url: str, headers: Optional[Mapping[str, str]] = None, timeout: float = 5.0,
             cafile: Optional[str] = None, proxies: Optional[Mapping[str, str]] = None) -> HttpResult:
    """GET ``url``; loopback URLs never go through a proxy (as curl --noproxy in ccq)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1"):
        proxies = {}
    # ProxyHandler() with no argument takes the proxies from this process's environment.
    handlers: list[Any] = [urllib.request.ProxyHandler(dict(proxies)) if proxies is not None
                           else urllib.request.ProxyHandler()]
    if url.startswith("https:"):
        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=cafile)))
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(url, headers=dict(headers or {}), method="GET")
    try:
        with opener.open(request, timeout=timeout) as response:
            return HttpResult(status=response.status, body=response.read())
    except urllib.error.HTTPError as exc:
        return HttpResult(status=exc.code, body=exc.read() or b"")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        kind, text = classify_network_error(exc)
        return HttpResult(error_kind=kind, error=text)


def run(argv: Sequence[str], env: Optional[Mapping[str, str]] = None, timeout: float = 20.0,
        cwd: Optional[Path] = None) -> subprocess.CompletedProcess[str]:
    """Run a command; a missing program or a timeout is an rc of 127 / 124, not an exception."""
    try:
        return subprocess.run(list(argv), env=dict(env) if env is not None else None, cwd=cwd,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, start_new_session=True)
    except FileNotFoundError:
        return subprocess.CompletedProcess(list(argv), 127, "", f"{argv[0]}: not found")
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(list(argv), 124, "", f"{argv[0]}: timed out after {timeout:.0f}s")


def read_text(path: Path, limit: Optional[int] = None) -> Optional[str]:
    """A file's text (its last ``limit`` bytes when given), None when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            if limit is not None:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(fh.tell() - limit, 0))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return None


def read_secret(path: Path) -> str:
    """A key file's first line, stripped; "" when missing or unreadable."""
    text = read_text(path)
    return text.splitlines()[0].strip() if text and text.strip() else ""


@dataclass
class Process:
    """A running process, from /proc."""

    pid: int
    argv: list[str]
    started: float  # epoch seconds
    environ: dict[str, str] = field(default_factory=dict)  # only SECRET_ENV_NAMES, fingerprinted

    @property
    def uptime(self) -> float:
        return time.time() - self.started


def _boot_time(proc: Path) -> float:
    text = read_text(proc / "stat") or ""
    match = re.search(r"^btime (\d+)", text, re.M)
    return float(match.group(1)) if match else 0.0


def read_process(pid: int, proc: Path = Path("/proc")) -> Optional[Process]:
    """The process ``pid`` when it exists, with the fingerprints of the keys in its environment."""
    try:
        raw_argv = (proc / str(pid) / "cmdline").read_bytes()
        stat_text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    argv = [a.decode("utf-8", "replace") for a in raw_argv.split(b"\0") if a]
    if not argv:  # a zombie
        return None
    fields = stat_text[stat_text.rfind(")") + 2:].split()
    started = _boot_time(proc) + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    environ: dict[str, str] = {}
    try:
        for item in (proc / str(pid) / "environ").read_bytes().split(b"\0"):
            name, _, value = item.decode("utf-8", "replace").partition("=")
            if name in SECRET_ENV_NAMES:
                environ[name] = fingerprint(value) or ""
    except OSError:
        pass
    return Process(pid, argv, started, environ)


def child_pids(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """``pid`` and all its descendants (uvicorn workers)."""
    parents: dict[int, list[int]] = {}
    for entry in proc.glob("[0-9]*"):
        text = read_text(entry / "stat")
        if text:
            fields = text[text.rfind(")") + 2:].split()
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def socket_inodes(pids: Iterable[int], proc: Path = Path("/proc")) -> set[int]:
    """The socket inodes the processes hold open (readable for our own processes)."""
    inodes = set()
    for pid in pids:
        try:
            fds = list((proc / str(pid) / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            match = re.fullmatch(r"socket:\[(\d+)\]", target)
            if match:
                inodes.add(int(match.group(1)))
    return inodes


def listeners(proc: Path = Path("/proc")) -> list[Listener]:
    """Every listening TCP socket in this network namespace."""
    found: list[Listener] = []
    for name in ("tcp", "tcp6"):
        text = read_text(proc / "net" / name)
        if text:
            found.extend(parse_proc_net_tcp(text))
    return found


def is_litellm(process: Process) -> bool:
    """Whether the process is a LiteLLM proxy (python .../bin/litellm ...)."""
    return runs_litellm(process.argv)


def find_litellm_processes(config_path: Path, proc: Path = Path("/proc")) -> list[Process]:
    """Our own LiteLLM processes started with ccq's config (when no pidfile/unit names one)."""
    found = []
    for entry in proc.glob("[0-9]*"):
        try:
            if entry.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        process = read_process(int(entry.name), proc)
        if process and is_litellm(process) and option_value(process.argv, "--config") == str(config_path):
            found.append(process)
    return found


# ---------------------------------------------------------------------------------------
# Facts: gathered once, lazily, shared by the checks
# ---------------------------------------------------------------------------------------

@dataclass
class ServiceState:
    """What the service manager says about the proxy's service (each manager fills its fields)."""

    loaded: bool = False
    enabled: str = ""  # systemd's UnitFileState; for launchd, the domain the agent is in
    active: str = ""
    sub: str = ""
    result: str = ""
    n_restarts: int = 0
    main_pid: int = 0
    exec_start: list[str] = field(default_factory=list)  # as loaded by systemd
    unit_file_exec_start: list[str] = field(default_factory=list)  # as on disk
    need_reload: bool = False
    linger: Optional[bool] = None
    pidfile_pid: int = 0
    error: str = ""


@dataclass
class Capture:
    """The environment and arguments the ccq shell function gives Claude Code."""

    ok: bool
    source: str  # "bash (~/.bashrc)", "zsh (~/.zshrc)" or "ccq.sh"
    env: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)
    token_fingerprint: Optional[str] = None
    anthropic_api_key_set: bool = False
    error: str = ""

    @property
    def alias(self) -> Optional[str]:
        return option_value(self.argv, "--model") or self.env.get("ANTHROPIC_MODEL")

    @property
    def port(self) -> Optional[int]:
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
_CAPTURE_SCRIPT = """
_ccq_proxy_healthy() { return 0; }
_ccq_proxy_start() { return 0; }
PATH="$CCQ_DOCTOR_FAKE_DIR:$PATH"
if typeset -f ccq >/dev/null 2>&1; then ccq --version; else exit %d; fi
""" % NO_SHELL_FUNCTION


def user_shell(environ: Mapping[str, str]) -> str:
    """bash or zsh: the shell whose rc file the user's ccq comes from."""
    shell = environ.get("SHELL") or pwd.getpwuid(os.getuid()).pw_shell
    name = Path(shell).name
    return name if name in ("bash", "zsh") and shutil.which(name) else "bash"


def capture_ccq(settings: Settings, environ: Mapping[str, str], interactive: bool = True) -> Capture:
    """Run the user's ccq with a stand-in claude and record what it would hand Claude Code.

    interactive: a new interactive bash/zsh, so the rc files decide which ccq runs (a seed
    recipe's ccq() further down ~/.zshrc overrides ccq's own). Otherwise ccq.sh alone.
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
            return Capture(False, source, error=f"ccq did not run claude from PATH (exit {done.returncode}) {tail}".strip())
        record = json.loads(record_path.read_text())
    return Capture(True, source, env=record["env"], argv=record["argv"],
                   token_fingerprint=record["token_fingerprint"],
                   anthropic_api_key_set=record["anthropic_api_key_set"])


def site_packages(venv: Path) -> Optional[Path]:
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
        self._callback_probe: Optional[subprocess.Popen[str]] = None

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
        """The launcher script's code (comments left out); "" when it is missing."""
        return shell_code(read_text(self.settings.paths["proxy_launcher"]) or "")

    # -- secrets (memory only) -----------------------------------------------------------
    @cached_property
    def env_file(self) -> Optional[dict[str, str]]:
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
    def proxy_process(self) -> Optional[Process]:
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
    def journal(self) -> Optional[list[str]]:
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
    @cached_property
    def health(self) -> HttpResult:
        return http_get(f"http://127.0.0.1:{self.ccq_port()}/health/liveliness", timeout=3)

    @cached_property
    def proxy_models(self) -> HttpResult:
        key = self.master_key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return http_get(f"http://127.0.0.1:{self.ccq_port()}/v1/models", headers=headers, timeout=10)

    @cached_property
    def readiness(self) -> HttpResult:
        """LiteLLM's /health/readiness: its version and the callbacks it actually loaded."""
        key = self.master_key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return http_get(f"http://127.0.0.1:{self.ccq_port()}/health/readiness", headers=headers, timeout=10)

    def loaded_callbacks(self) -> Optional[list[str]]:
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
    def proxy_config(self) -> Optional[ProxyConfig]:
        path = self.settings.paths["proxy_config"]
        text = read_text(path)
        if text is None:
            return None
        python = self.settings.paths["litellm_venv"] / "bin" / "python"
        if python.exists():
            # LiteLLM's own YAML parser, from its venv: what the proxy itself will read.
            done = run([str(python), "-c", "import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
                        str(path)], timeout=30)
            if done.returncode == 0:
                try:
                    return proxy_config_from_data(json.loads(done.stdout))
                except ValueError:
                    pass
        return parse_proxy_config(text)

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
    def callback_import(self) -> Optional[str]:
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
    def claude_version(self) -> Optional[str]:
        claude = self.settings.paths["bin_dir"] / "claude"
        found = str(claude) if claude.exists() else shutil.which("claude", path=self.environ.get("PATH"))
        if not found:
            return None
        env = dict(self.environ, DISABLE_AUTOUPDATER="1")
        done = run([found, "--version"], env=env, timeout=30)
        match = re.match(r"\s*(\d+\.\d+\.\d+\S*)", done.stdout)
        return match.group(1) if done.returncode == 0 and match else ""

    @cached_property
    def node_version(self) -> Optional[str]:
        done = run(["node", "--version"], env=self.environ, timeout=10)
        return done.stdout.strip() if done.returncode == 0 else None


# ---------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------

@dataclass
class Finding:
    """One check's verdict: a status, what was found, the fix, and supporting lines."""

    status: str
    message: str
    fix: str = ""
    details: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Check:
    """A doctor check, and its row in the troubleshooting table (docs/troubleshooting.md)."""

    id: str
    symptom: str  # what the user sees
    looks_at: str  # what doctor verifies
    fix: str  # the fix, in short (doctor prints the exact one)
    run: Callable[[Facts], Finding]


# ---------------------------------------------------------------------------------------
# The service manager: what keeps the proxy up, and what that changes for the checks
# ---------------------------------------------------------------------------------------

class ServiceManager(ABC):
    """One class per way the proxy is kept up, picked once from the settings (service_manager);
    the checks ask it rather than branch on its name. The defaults are for a manager without a
    unit file or journal that doctor reads."""

    name: str  # the settings' service_manager

    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.environ = environ

    @abstractmethod
    def read_state(self) -> ServiceState:
        """What the manager says about the proxy's service now."""

    @abstractmethod
    def service_finding(self, facts: Facts) -> Finding:
        """The service check's verdict."""

    @abstractmethod
    def restart_command(self, state: ServiceState) -> str:
        """The command that restarts the proxy."""

    @property
    @abstractmethod
    def description(self) -> str:
        """How the proxy is kept up, in a few words (`ccq status`)."""

    @property
    def log_file(self) -> Path:
        """The file the proxy's output goes to."""
        return self.settings.paths["proxy_log"]

    @property
    def log_location(self) -> str:
        """Where to read the proxy's output (`ccq status`)."""
        return str(self.log_file)

    def proxy_pid(self, state: ServiceState) -> int:
        """The pid the manager gives for the proxy (0: none)."""
        return state.main_pid

    def may_search_for_the_proxy(self, state: ServiceState) -> bool:
        """Whether a LiteLLM process found by its config counts as the proxy when the manager's
        pid is not a LiteLLM process."""
        return True

    def unit_command(self, state: ServiceState) -> list[str]:
        """The command line the manager's unit runs; [] without a unit file doctor reads."""
        return []

    def unit_files(self) -> list[Path]:
        """The manager's files the running proxy was started from."""
        return []

    def journal(self) -> Optional[list[str]]:
        """The proxy's recent journal lines, None when there is no journal to read."""
        return None

    def service_environment(self) -> Mapping[str, str]:
        """The environment the proxy inherits besides its environment file: this process's, as
        ccq's on-demand start passes the shell's on."""
        return self.environ

    def error_lines(self, facts: Facts) -> list[str]:
        """The proxy's last error lines."""
        return last_error_lines(facts.log_tail)

    def not_running(self, message: str) -> Finding:
        """The port check's verdict when nothing listens and no proxy runs."""
        return Finding(WARN, message, "run ccq (it starts the proxy)")

    def show_journal(self, lines: int, follow: bool, out: Callable[[str], None]) -> bool:
        """Print the journal's last ``lines`` lines (``follow``: and then new ones); False when
        there is none, so `ccq logs` shows the log file."""
        return False


class Systemd(ServiceManager):
    """A systemd user unit keeps the proxy up (Debian, Ubuntu; WSL with systemd)."""

    name = "systemd"

    @property
    def description(self) -> str:
        return f"systemd {self.settings.unit}"

    @property
    def log_location(self) -> str:
        return f"journalctl --user -u {self.settings.unit}"

    def _systemctl(self, verb: str) -> str:
        return f"systemctl --user {verb} {self.settings.unit}"

    def _environment(self) -> dict[str, str]:
        """The environment for systemctl and journalctl."""
        env = dict(self.environ)
        runtime = Path(f"/run/user/{os.getuid()}")
        if not env.get("XDG_RUNTIME_DIR") and runtime.is_dir():
            # `systemctl --user` from sudo/ssh without a session: "Failed to connect to bus".
            env["XDG_RUNTIME_DIR"] = str(runtime)
        return env

    def _journalctl(self, lines: int, output: str) -> list[str]:
        return ["journalctl", "--user", "-u", self.settings.unit, "-n", str(lines), "--no-pager", "-o", output]

    def read_state(self) -> ServiceState:
        settings = self.settings
        state = ServiceState()
        props = "LoadState,UnitFileState,ActiveState,SubState,Result,NRestarts,MainPID,ExecStart,NeedDaemonReload"
        shown = run(["systemctl", "--user", "show", settings.unit, "-p", props], env=self._environment())
        if shown.returncode != 0:
            state.error = (shown.stderr.strip().splitlines() or ["systemctl --user failed"])[-1]
            return state
        values = parse_systemctl_show(shown.stdout)
        state.loaded = values.get("LoadState") == "loaded"
        state.enabled = values.get("UnitFileState", "")
        state.active = values.get("ActiveState", "")
        state.sub = values.get("SubState", "")
        state.result = values.get("Result", "")
        state.n_restarts = int(values.get("NRestarts") or 0)
        state.main_pid = int(values.get("MainPID") or 0)
        state.exec_start = exec_start_argv(values.get("ExecStart", ""))
        state.need_reload = values.get("NeedDaemonReload") == "yes"
        unit_text = read_text(settings.unit_path)
        state.unit_file_exec_start = unit_exec_start(unit_text) if unit_text else []
        linger_dir = Path("/var/lib/systemd/linger")
        state.linger = (linger_dir / settings.user).exists() if linger_dir.is_dir() else None
        return state

    def may_search_for_the_proxy(self, state: ServiceState) -> bool:
        # An active unit names its process: another LiteLLM on ccq's config is not the one it keeps up.
        return state.active != "active"

    def unit_command(self, state: ServiceState) -> list[str]:
        return state.unit_file_exec_start or state.exec_start

    def unit_files(self) -> list[Path]:
        return [self.settings.unit_path]

    def journal(self) -> Optional[list[str]]:
        done = run(self._journalctl(300, "cat"), env=self._environment())
        if done.returncode != 0 or "No journal files" in done.stderr:
            return None
        return done.stdout.splitlines()

    def service_environment(self) -> Mapping[str, str]:
        """The user manager's environment: the service does not see the login shell's."""
        done = run(["systemctl", "--user", "show-environment"], env=self._environment())
        return parse_env_file(done.stdout) if done.returncode == 0 else {}

    def error_lines(self, facts: Facts) -> list[str]:
        lines = facts.journal
        return last_error_lines(facts.log_tail if lines is None else lines)

    def restart_command(self, state: ServiceState) -> str:
        # After StartLimitBurst failures systemd refuses even a manual start until reset.
        if state.active == "failed":
            return self._reset_and_restart()
        return self._systemctl("restart")

    def _reset_and_restart(self) -> str:
        return f"{self._systemctl('reset-failed')} && {self._systemctl('restart')}"

    def not_running(self, message: str) -> Finding:
        return Finding(FAIL, message, self._systemctl("start"))

    def service_finding(self, facts: Facts) -> Finding:
        service = facts.service
        settings = self.settings
        process = facts.proxy_process
        if service.error:
            return Finding(FAIL, f"systemctl --user does not answer: {service.error}",
                           f"log in as {settings.user} (or export XDG_RUNTIME_DIR=/run/user/{os.getuid()}) and retry")
        if not service.loaded:
            return Finding(FAIL, f"{settings.unit} is not installed ({settings.unit_path} missing)",
                           _reprovision(facts, "it installs and starts the user unit"))
        errors = self.error_lines(facts)
        # Between crashes a Type=simple unit shows active/running for the seconds LiteLLM takes
        # to fail its imports; restarts that never reach a healthy proxy are the loop.
        restarting_unhealthy = service.active == "active" and service.n_restarts >= 1 and not facts.health.ok
        if service.active in ("failed", "activating") or service.sub == "auto-restart" or restarting_unhealthy:
            return Finding(FAIL, f"{settings.unit} is crash-looping ({service.active}/{service.sub}, "
                                 f"{service.n_restarts} restarts, result {service.result}); its last error lines:",
                           f"fix the error below, then: {self._reset_and_restart()}", errors)
        if service.active != "active":
            return Finding(FAIL, f"{settings.unit} is stopped ({service.active}/{service.sub})",
                           self._systemctl("start"), errors if service.result != "success" else [])
        if service.enabled != "enabled":
            return Finding(FAIL, f"{settings.unit} runs but is {service.enabled or 'not enabled'}: it will not start at boot",
                           self._systemctl("enable"))
        uptime = f", up {format_duration(process.uptime)}" if process else ""
        running = f"{settings.unit} is enabled and running (pid {service.main_pid}{uptime})"
        if service.n_restarts >= 3:
            return Finding(WARN, f"{running}, but systemd restarted it {service.n_restarts} times; last error lines:",
                           f"journalctl --user -u {settings.unit} -n 100", errors)
        if service.linger is False:
            return Finding(WARN, f"{running}, but lingering is off: it stops when {settings.user} logs out",
                           f"sudo loginctl enable-linger {settings.user}")
        return Finding(OK, running)

    def show_journal(self, lines: int, follow: bool, out: Callable[[str], None]) -> bool:
        argv = self._journalctl(lines, "short-iso")
        if follow:
            proc = subprocess.Popen(argv + ["-f"], env=self._environment(), stdout=subprocess.PIPE, text=True)
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    out(line.rstrip("\n"))
            except KeyboardInterrupt:
                proc.terminate()
            return True
        done = run(argv, env=self._environment(), timeout=30)
        if done.returncode == 0 and "No journal files" not in done.stderr:
            for line in done.stdout.splitlines():
                out(line)
            return True
        out(f"(the journal cannot be read: {done.stderr.strip()}; showing {self.log_file})")
        return False


class Launchd(ServiceManager):
    """A launch agent keeps the proxy up (macOS). Untested here (no macOS): issue 6's macOS CI job runs it."""

    name = "launchd"

    @property
    def description(self) -> str:
        return f"launchd {self.settings.service_name}"

    @property
    def log_file(self) -> Path:
        return self.settings.paths["launchd_log"]

    def read_state(self) -> ServiceState:
        """The launch agent as `launchctl print` shows it (GUI session first, then the user domain)."""
        state = ServiceState()
        for domain in (f"gui/{os.getuid()}", f"user/{os.getuid()}"):
            done = run(["launchctl", "print", f"{domain}/{self.settings.service_name}"], env=self.environ)
            if done.returncode == 0:
                values = parse_launchctl_print(done.stdout)
                state.loaded = True
                state.enabled = domain
                state.active = values.get("state", "")
                state.main_pid = int(values.get("pid", "0") or 0)
                state.result = values.get("last exit code", "")
                return state
        return state

    def restart_command(self, state: ServiceState) -> str:
        return f"launchctl kickstart -k {state.enabled or 'gui/$(id -u)'}/{self.settings.service_name}"

    def service_finding(self, facts: Facts) -> Finding:
        service = facts.service
        process = facts.proxy_process
        settings = self.settings
        plist = settings.home / "Library/LaunchAgents" / f"{settings.service_name}.plist"
        if not service.loaded:
            return Finding(FAIL, f"the launch agent {settings.service_name} is not loaded",
                           f"launchctl bootstrap gui/$(id -u) {plist}")
        if service.active != "running" or not service.main_pid:
            return Finding(FAIL, f"the launch agent {settings.service_name} is {service.active or 'not running'} "
                                 f"(last exit code {service.result or '?'}); its last error lines:",
                           self.restart_command(service), self.error_lines(facts))
        # No /proc on macOS: the pid is launchd's word, the uptime unknown.
        uptime = f", up {format_duration(process.uptime)}" if process else ""
        return Finding(OK, f"launch agent {settings.service_name} is running (pid {service.main_pid}{uptime})")


class OnDemand(ServiceManager):
    """No service manager (containers, WSL without systemd): ccq starts the proxy when it is
    down, in the background, with a pidfile and a log file."""

    name = "none"

    @property
    def description(self) -> str:
        return "on demand, no systemd"

    def read_state(self) -> ServiceState:
        state = ServiceState()
        text = read_text(self.settings.paths["proxy_pidfile"])
        if text and text.strip().isdigit():
            state.pidfile_pid = int(text.strip())
        return state

    def proxy_pid(self, state: ServiceState) -> int:
        return state.pidfile_pid

    def restart_command(self, state: ServiceState) -> str:
        return f"kill $(cat {self.settings.paths['proxy_pidfile']})  # ccq starts it again on its next call"

    def service_finding(self, facts: Facts) -> Finding:
        settings = self.settings
        process = facts.proxy_process
        if process:
            return Finding(OK, f"running on demand (no systemd here): pid {process.pid}, up {format_duration(process.uptime)}")
        start_lines, served = last_start(facts.log_tail)
        errors = last_error_lines(start_lines)
        if errors and not served:
            return Finding(FAIL, f"not running, and its last start failed (log {settings.paths['proxy_log']})",
                           "fix the error below, then run ccq again (it starts the proxy and waits for it)", errors)
        return Finding(WARN, f"not running (no systemd here: ccq starts it on its next call; pidfile "
                             f"{settings.paths['proxy_pidfile']})")


SERVICE_MANAGERS: dict[str, type[ServiceManager]] = {manager.name: manager for manager in (Systemd, Launchd, OnDemand)}


def service_manager(settings: Settings, environ: Mapping[str, str]) -> ServiceManager:
    """The manager the settings name; unset: launchd on macOS, systemd where it runs, else none."""
    name = settings.service_manager or (
        "launchd" if sys.platform == "darwin" else "systemd" if Path("/run/systemd/system").is_dir() else "none")
    return SERVICE_MANAGERS.get(name, OnDemand)(settings, environ)


def _restart_command(facts: Facts) -> str:
    return facts.manager.restart_command(facts.service)


def _reprovision(facts: Facts, why: str = "") -> str:
    text = f"re-run the provisioning ({facts.settings.reprovision})"
    return f"{text}: {why}" if why else text


def _proxy_down(facts: Facts) -> Optional[Finding]:
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
                   _reprovision(facts, "it adds the marked block that loads ccq to ~/.bashrc and ~/.zshrc; then open a new shell"))


def check_service(facts: Facts) -> Finding:
    return facts.manager.service_finding(facts)


def check_port(facts: Facts) -> Finding:
    port = facts.ccq_port()
    settings = facts.settings
    service: ServiceState = facts.service
    unit_port = option_value(facts.manager.unit_command(service), "--port")
    mismatch = ""
    if unit_port and unit_port != str(port):
        mismatch = f"the unit starts the proxy with --port {unit_port} but ccq uses {port}"
    if facts.health.ok and not mismatch:
        return Finding(OK, f"the proxy answers on 127.0.0.1:{port}, the port ccq uses")
    process: Optional[Process] = facts.proxy_process
    own = sorted({str(entry) for entry in facts.proxy_listeners})
    taken = [entry for entry in facts.listeners if entry.port == port]
    fix = _reprovision(facts, f"it writes ccq_proxy_port ({settings.port}) into both the unit and ccq; "
                              f"then {_restart_command(facts)}")
    if facts.health.ok:
        return Finding(FAIL, mismatch + " (the unit changed since the proxy started)", fix)
    if process and own:
        return Finding(FAIL, f"nothing answers on 127.0.0.1:{port}, the port ccq uses; the proxy (pid {process.pid}) "
                             f"listens on {', '.join(own)}" + (f"; {mismatch}" if mismatch else ""), fix)
    if taken:
        return Finding(FAIL, f"127.0.0.1:{port} is held by another program that does not answer as LiteLLM",
                       f"find it with: ss -ltnp 'sport = :{port}'; stop it, or set ccq_proxy_port to a free port and "
                       + _reprovision(facts))
    if process:
        return Finding(FAIL, f"the proxy (pid {process.pid}) runs but does not listen on 127.0.0.1:{port} yet "
                             f"(still starting, or stuck)", f"{_restart_command(facts)}; then run ccq doctor again")
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
    launcher_argv = launcher_litellm_argv(facts.launcher)
    fix = _reprovision(facts, f"its launcher runs litellm --host 127.0.0.1; then {_restart_command(facts)}")
    if exposed:
        return Finding(FAIL, f"the proxy listens beyond loopback on {', '.join(exposed)}: anyone who can reach "
                             f"this machine can use it", fix)
    # A unit that runs litellm itself instead of the launcher (edited by hand, or older).
    if runs_litellm(unit_argv) and option_value(unit_argv, "--host") != "127.0.0.1":
        return Finding(FAIL, f"{settings.unit_path} starts litellm without --host 127.0.0.1 (LiteLLM binds 0.0.0.0 "
                             "by default)", fix)
    if launcher_argv and option_value(launcher_argv, "--host") != "127.0.0.1":
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
                       _reprovision(facts, "it makes a random master key once and keeps it"))
    capture = facts.usable_capture()
    if capture.ok and capture.token_fingerprint != fingerprint(master_key):
        return Finding(FAIL, f"ccq ({capture.source}) sends a token that is not the master key in {key_file} "
                             "(an older ccq, such as the seed recipe's with sk-local, overrides ccq's)",
                       "remove the other ccq() from your rc files, keep the block marked 'ccq: cc and ccq', open a new shell")
    if capture.ok and capture.anthropic_api_key_set:
        return Finding(FAIL, "ANTHROPIC_API_KEY reaches Claude Code under ccq; Claude Code prefers it to the proxy's token",
                       _reprovision(facts, "ccq unsets ANTHROPIC_API_KEY for its call"))
    down = _proxy_down(facts)
    if down:
        return down
    reply: HttpResult = facts.proxy_models
    if reply.ok:
        return Finding(OK, f"the proxy accepts the master key from {key_file}")
    if reply.status not in (401, 403):
        return Finding(FAIL, f"GET /v1/models with the master key answered {reply.status or reply.error}",
                       f"{_restart_command(facts)}; if it persists, see ccq logs")
    env_file = facts.env_file or {}
    process: Optional[Process] = facts.proxy_process
    if env_file.get("LITELLM_MASTER_KEY") and fingerprint(env_file["LITELLM_MASTER_KEY"]) != fingerprint(master_key):
        return Finding(FAIL, f"401 Unauthorized: {settings.paths['proxy_env_file']} holds a different master key "
                             f"than {key_file}", _reprovision(facts, "it writes the same key into both and restarts the proxy"))
    stale = ""
    if process and process.environ.get("LITELLM_MASTER_KEY") and \
            process.environ["LITELLM_MASTER_KEY"] != fingerprint(master_key):
        stale = f" (it started {format_duration(process.uptime)} ago, before the key was rotated)"
    return Finding(FAIL, f"401 Unauthorized: the running proxy holds an older master key than {key_file}{stale}",
                   _restart_command(facts))


def check_versions(facts: Facts) -> Finding:
    settings = facts.settings
    venv = settings.paths["litellm_venv"]
    versions = facts.versions
    if "litellm" not in versions:
        return Finding(FAIL, f"LiteLLM is not installed in {venv}", _reprovision(facts, "it builds LiteLLM's venv from ccq's lock"))
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
                       _reprovision(facts, "it rebuilds LiteLLM's venv from ccq's lock and restarts the proxy"))
    return Finding(OK, f"litellm {versions['litellm']}, openai {openai} (within {settings.openai_version_spec})")


def check_drop_params(facts: Facts) -> Finding:
    service: ServiceState = facts.service
    process: Optional[Process] = facts.proxy_process
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
                       _reprovision(facts, f"its launcher never passes --drop_params; then {_restart_command(facts)}"))
    return Finding(OK, "no --drop_params in the launcher, the unit or the running proxy")


def check_callback(facts: Facts) -> Finding:
    settings = facts.settings
    config: Optional[ProxyConfig] = facts.proxy_config
    path = settings.paths["proxy_config"]
    callbacks_file = settings.paths["proxy_callbacks"]
    if config is None:
        return Finding(FAIL, f"{path} is missing", _reprovision(facts))
    if CALLBACK_SETTING not in config.callbacks:
        return Finding(FAIL, f"{path} does not load the callback (litellm_settings.callbacks: {CALLBACK_SETTING}): "
                             "Claude Code's thinking/cache_control fields then reach Cerebras and subagents fail",
                       _reprovision(facts, f"it rewrites {path.name}; then {_restart_command(facts)}"))
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
                       _reprovision(facts, "it restores the file and the venv") + details)
    if loaded is not None:
        return Finding(FAIL, f"the running proxy did not load {wanted or CALLBACK_SETTING} "
                             f"(it loaded {', '.join(loaded) or 'nothing'}): it started before the callback was configured",
                       _restart_command(facts))
    return Finding(OK, f"{path.name} loads {CALLBACK_SETTING}, and it imports in LiteLLM's venv (the proxy is not up to ask)")


def _variables_finding(facts: Facts, names: Sequence[str], consequence: str, background: bool = False) -> Finding:
    """Whether ccq sets each of ``names`` to the alias (``background``: to the background alias
    when one is configured)."""
    capture = facts.usable_capture()
    if not capture.ok:
        return Finding(FAIL, f"cannot run ccq to see its environment: {capture.error}",
                       _reprovision(facts, "it writes the ccq function"))
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
                       _reprovision(facts, "it writes the ccq function that sets them; then open a new shell"))
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
        return Finding(WARN, "doctor.json does not say which window ccq should tell Claude Code (an older provisioning)",
                       _reprovision(facts))
    capture = facts.usable_capture()
    if not capture.ok:
        return Finding(FAIL, f"cannot run ccq to see its environment: {capture.error}",
                       _reprovision(facts, "it writes the ccq function"))
    wrong = [f"{n} is unset" if n not in capture.env else f"{n}={capture.env[n]}"
             for n, value in sorted(expected.items()) if capture.env.get(n) != value]
    window = expected.get("CLAUDE_CODE_MAX_CONTEXT_TOKENS", "?")
    if wrong:
        return Finding(FAIL, f"under ccq ({capture.source}) " + ", ".join(wrong) + f", not the model's limits (a "
                             f"{window}-token window): Claude Code then assumes 1M tokens and compacts only after "
                             "Cerebras refuses a request",
                       _reprovision(facts, "it writes the ccq function that sets them; then open a new shell"))
    resume = expected.get("CLAUDE_CODE_RESUME_HINT_COMMAND")
    return Finding(OK, f"ccq tells Claude Code a {window}-token window and "
                       f"{expected.get('CLAUDE_CODE_MAX_OUTPUT_TOKENS', '?')} output tokens"
                       + (f"; resume a session with `{resume} --resume <id>` or `{resume} --continue`" if resume else ""))


def check_alias(facts: Facts) -> Finding:
    alias = facts.ccq_alias()
    background = facts.background_alias()
    aliases = [alias] + ([background] if background else [])
    # How each alias is named in a message: the background one says what asks for it.
    named = {alias: f"'{alias}'", background: f"'{background}' (background calls)"}
    config: Optional[ProxyConfig] = facts.proxy_config
    path = facts.settings.paths["proxy_config"]
    fix = _reprovision(facts, "set ccq_model_alias once; it writes the same alias into config.yaml and ccq"
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
                                 f"{', '.join(served) or 'nothing'} (it predates the config)", _restart_command(facts))
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
                       "check the network/DNS (offline? VPN?); ccq needs to reach " + host)
    if result.error_kind == "tls":
        return Finding(FAIL, f"{host}: {result.error}: a TLS-intercepting (corporate) proxy?",
                       _reprovision(facts, "with ccq_extra_ca_certs listing your proxy's CA certificate file(s)"))
    if result.error_kind:
        shell_proxy = [n for n in PROXY_VARS if facts.environ.get(n)]
        if shell_proxy and not facts.service_proxies():
            return Finding(FAIL, f"cannot reach {upstream.url}: {result.error}; your shell uses {shell_proxy[0]} but "
                                 "the proxy service does not see it",
                           f"systemctl --user set-environment {shell_proxy[0]}=<your proxy URL> (or put it in "
                           f"~/.config/environment.d/proxy.conf); then {_restart_command(facts)}")
        return Finding(FAIL, f"cannot reach {upstream.url}: {result.error}",
                       f"check the network path to {host} (firewall, VPN, an HTTPS_PROXY the proxy service needs)")
    if result.status in (401, 403):
        return Finding(FAIL, f"Cerebras rejects the API key (HTTP {result.status}) in {settings.paths['api_key_file']}",
                       f"CEREBRAS_API_KEY=<a valid key> {settings.reprovision} (or -e ccq_cerebras_api_key=... from a vault)")
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
                       _reprovision(facts, "; ".join(fixes)))
    return Finding(OK, f"Cerebras serves {model}" + (f" and the background model {background}" if background else ""))


def check_claude_code(facts: Facts) -> Finding:
    settings = facts.settings
    version = facts.claude_version
    node = facts.node_version
    if version is None:
        return Finding(FAIL, f"claude is not installed ({settings.paths['bin_dir']}/claude)",
                       _reprovision(facts, "it installs the pinned Claude Code"))
    if version == "":
        return Finding(FAIL, "claude --version fails", _reprovision(facts, "it reinstalls the pinned Claude Code"))
    if node is None or version_tuple(node) < version_tuple(settings.node_min_version):
        return Finding(FAIL, f"Node.js {node or 'is missing'}; ccq needs >= {settings.node_min_version} (npm installs "
                             "and updates Claude Code)", _reprovision(facts, "it installs Node.js from the distribution"))
    if settings.claude_code_version and version != settings.claude_code_version:
        return Finding(WARN, f"Claude Code {version}, but ccq was tested with {settings.claude_code_version}: new "
                             "request fields may need a newer callback", _reprovision(facts, "it installs the tested version"))
    return Finding(OK, f"Claude Code {version}, Node.js {node}")


def _mode_problem(path: Path) -> Optional[str]:
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
           _reprovision(facts, "ccq appends them to your NO_PROXY for its call") + "; then open a new shell")
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
    process: Optional[Process] = facts.proxy_process
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
        fix = ("systemctl --user daemon-reload && " if service.need_reload else "") + _restart_command(facts)
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
    Check("window", "Claude Code says it assumes a context window of 1m tokens; `Please reduce the length of the messages`",
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


# ---------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------

def selected_checks(names: Sequence[str]) -> list[Check]:
    """The checks named on the command line, in CHECKS' order (none named: all of them)."""
    known = {check.id for check in CHECKS}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"no check named {', '.join(repr(n) for n in unknown)}; `ccq doctor` knows: "
                         + " ".join(check.id for check in CHECKS))
    return [check for check in CHECKS if not names or check.id in names]


def cmd_doctor(settings: Settings, args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    try:
        checks = selected_checks(getattr(args, "check", None) or [])
    except ValueError as exc:
        out(f"ccq doctor: {exc}")
        return 2
    facts = Facts(settings)
    background = f" (background calls: {settings.background_model_alias})" if settings.background_model_alias else ""
    out(f"ccq doctor: {settings.user}@{socket.gethostname()}, proxy 127.0.0.1:{settings.port}, "
        f"alias {settings.model_alias}{background}")
    results = run_checks(facts, checks)
    for line in format_findings(results, facts.secrets()):
        out(line)
    return 1 if any(finding.status == FAIL for _, finding in results) else 0


def cmd_status(settings: Settings, args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    facts = Facts(settings)
    service: ServiceState = facts.service
    process: Optional[Process] = facts.proxy_process
    healthy = facts.health.ok
    how = facts.manager.description
    if healthy and process:
        state = f"up ({how}, pid {process.pid}, up {format_duration(process.uptime)})"
    elif healthy:
        state = f"up ({how})"
    elif process:
        state = f"starting or stuck ({how}, pid {process.pid}, not answering)"
    else:
        state = f"down ({how}{', ' + service.active if service.active else ''})"
    versions = facts.versions
    lines = [
        f"proxy     {state}",
        f"port      127.0.0.1:{facts.ccq_port()}",
        f"model     {facts.ccq_alias()} -> cerebras/{facts.upstream_model() or '?'} at {facts.api_base()}",
    ]
    if facts.background_alias():
        lines.append(f"model     {facts.background_alias()} -> cerebras/{facts.background_upstream_model() or '?'} "
                     "(Claude Code's background calls)")
    lines += [
        f"versions  litellm {versions.get('litellm', 'missing')}, openai {versions.get('openai', 'missing')}, "
        f"claude {facts.claude_version or 'missing'}",
        f"logs      {facts.manager.log_location} (ccq logs)",
    ]
    # What the proxy last heard of Cerebras' per-minute and per-day limits, per model.
    in_use = [m for m in (facts.upstream_model(), facts.background_upstream_model()) if m]
    lines += [f"quota     {line}" for line in quota_lines(settings.paths["quota_state"], in_use)]
    # Auto mode's safety checks spend the same quota as the work (docs/interactive.md).
    lines += [f"spent     {line}" for line in share_lines(settings.paths["quota_state"])]
    lines += [f"repairs   {line}" for line in repair_lines(settings.paths["quota_state"])]
    for line in lines:
        out(mask_secrets(line, facts.secrets()))
    return 0 if healthy else 3


def _follow_file(path: Path, start_lines: int) -> Iterator[str]:
    text = read_text(path, limit=1 << 20) or ""
    yield from text.splitlines()[-start_lines:]
    position = path.stat().st_size if path.exists() else 0
    while True:
        time.sleep(0.5)
        try:
            size = path.stat().st_size
        except OSError:
            continue
        if size < position:  # rotated or truncated
            position = 0
        if size > position:
            with open(path, "rb") as fh:
                fh.seek(position)
                chunk = fh.read()
            position += len(chunk)
            yield from chunk.decode("utf-8", "replace").splitlines()


def cmd_logs(settings: Settings, args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    facts = Facts(settings)
    secrets = facts.secrets()

    def masked(line: str) -> None:
        out(mask_secrets(line, secrets))

    if facts.manager.show_journal(args.lines, args.follow, masked):
        return 0
    path = facts.manager.log_file
    if not path.exists():
        out(f"no log yet: {path}")
        return 1
    if args.follow:
        try:
            for line in _follow_file(path, args.lines):
                masked(line)
        except KeyboardInterrupt:
            pass
        return 0
    for line in (read_text(path, limit=1 << 20) or "").splitlines()[-args.lines:]:
        masked(line)
    return 0


def cmd_checks(settings: Optional[Settings], args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    if args.markdown:
        out(markdown_table().rstrip("\n"))
    else:
        for check in CHECKS:
            out(f"{check.id:<12} {check.looks_at}")
    return 0


# Each command's exit status when doctor.json is unusable: doctor's "a check failed", and for
# status the LSB init-script code for "status unknown" beside its 0 (up) and 3 (down).
SETTINGS_ERROR_EXIT = {"doctor": 1, "status": 4, "logs": 1}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="doctor settings (default ~/.config/ccq/doctor.json)")
    parser = argparse.ArgumentParser(prog="ccq", description="ccq's own commands: doctor, status, logs.")
    sub = parser.add_subparsers(dest="command", required=True)
    doctor = sub.add_parser("doctor", parents=[common], help="check everything; exit 1 when something fails")
    doctor.add_argument("check", nargs="*", help="run only these checks (`ccq checks` lists them)")
    sub.add_parser("status", parents=[common], help="is the proxy up: port, model, versions, uptime")
    logs = sub.add_parser("logs", parents=[common], help="the proxy's recent log lines, secrets masked")
    logs.add_argument("-n", "--lines", type=int, default=50, help="how many lines (default 50)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    checks = sub.add_parser("checks", parents=[common], help="list doctor's checks")
    checks.add_argument("--markdown", action="store_true", help="as the troubleshooting table (docs/troubleshooting.md)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.command == "checks":
        return cmd_checks(None, args)
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"{FAIL:<4}  settings  {exc}")
        return SETTINGS_ERROR_EXIT[args.command]
    command = {"doctor": cmd_doctor, "status": cmd_status, "logs": cmd_logs}[args.command]
    try:
        return command(settings, args)
    except BrokenPipeError:  # `ccq logs | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
