"""Pure helpers: masking secrets, version pins, and the parsers of what doctor reads (env
files, systemctl and launchctl output, /proc/net/tcp, unit files, log lines)."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

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


def fingerprint(secret: str | None) -> str | None:
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


def option_value(argv: Sequence[str], option: str) -> str | None:
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

