"""The command line: `ccq doctor`, `ccq status`, `ccq logs` and `ccq checks`."""

from __future__ import annotations

import argparse
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ccq_doctor.checks import CHECKS, format_findings, markdown_table, run_checks
from ccq_doctor.facts import Facts
from ccq_doctor.findings import FAIL, Check
from ccq_doctor.machine import Process, read_text
from ccq_doctor.parsing import format_duration, mask_secrets
from ccq_doctor.quota import quota_lines, repair_lines, share_lines
from ccq_doctor.service_managers import ServiceState
from ccq_doctor.settings import Settings, SettingsError, load_settings


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
    process: Process | None = facts.proxy_process
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


def cmd_checks(settings: Settings | None, args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    if args.markdown:
        out(markdown_table().rstrip("\n"))
    else:
        for check in CHECKS:
            out(f"{check.id:<12} {check.looks_at}")
    return 0


# Each command's exit status when doctor.json is unusable: doctor's "a check failed", and for
# status the LSB init-script code for "status unknown" beside its 0 (up) and 3 (down).
SETTINGS_ERROR_EXIT = {"doctor": 1, "status": 4, "logs": 1}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
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
    checks.add_argument("--markdown", action="store_true",
                        help="as the troubleshooting table (docs/troubleshooting.md)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
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
