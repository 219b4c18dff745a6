"""Provisioning timings: a no-op re-run on this machine, and Molecule's on the test target.

* No-op re-run, connection local: only when this machine was provisioned
  before (``~/.config/ccq/litellm_config.yaml`` exists); it runs
  ``ansible-playbook site.yml`` as ``make provision`` does, so it changes
  nothing when the machine is up to date.  A machine that was never
  provisioned is not provisioned by the benchmark.
* First converge and no-op re-run on the test target: read from a Molecule log
  (the benchmark never starts containers).  Save one with
  ``make molecule 2>&1 | tee bench/results/tmp/molecule.log``, or point
  ``CCQ_BENCH_MOLECULE_LOG`` at a file or a glob of files; the newest log that
  holds each step is used.

Both parse ansible.posix.profile_tasks (enabled in ansible.cfg): the total at
the head of TASKS RECAP and the slowest tasks below it.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import Registry

PROVISIONED_MARKER = Path.home() / ".config/ccq/litellm_config.yaml"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Molecule 26 frames the playbook's output in a box and wraps long lines.
BOX_PREFIX = re.compile(r"^\s*[│┌└]\s?")
RECAP_TOTAL = re.compile(r"\((\d+):(\d\d):(\d\d(?:\.\d+)?)\)\s+(\d+):(\d\d):(\d\d(?:\.\d+)?)")
TASK_HEADER = re.compile(r"^(?:TASK|RUNNING HANDLER) \[(?P<name>.*?)\]")
TASK_TIME = re.compile(r"^(?P<name>.*?)\s-{2,}\s*(?P<seconds>\d+(?:\.\d+)?)s$")
PLAY_RECAP_HOST = re.compile(r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
                             r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)")
MOLECULE_STEP = re.compile(r"^(INFO|ERROR|WARNING|CRITICAL)\s+(?P<scenario>\S+)\s+➜\s+(?P<action>[\w-]+):\s+"
                           r"(?P<what>.*)$")
PROFILE_DATE = re.compile(r"^\w+day \d+ \w+ \d{4}\s+\d\d:\d\d:\d\d")


@dataclass
class PlaybookRun:
    """What one ansible-playbook run's output says about itself."""

    total_seconds: float | None = None
    ok: int | None = None
    changed: int | None = None
    failed: int | None = None
    top_tasks: list[tuple[str, float]] = field(default_factory=list)
    changed_tasks: list[str] = field(default_factory=list)
    first_timestamp: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"total_seconds": self.total_seconds, "ok": self.ok, "changed": self.changed,
                "failed": self.failed, "top_tasks": self.top_tasks,
                "changed_tasks": self.changed_tasks, "first_timestamp": self.first_timestamp}


def clean_lines(text: str) -> list[str]:
    """Output lines without colour codes or Molecule's box, wrapped lines re-joined."""
    out: list[str] = []
    for raw in text.splitlines():
        line = BOX_PREFIX.sub("", ANSI.sub("", raw)).rstrip()
        # Molecule wraps at ~80 columns and indents the continuation by two.
        if line.startswith("  ") and out and out[-1] and not out[-1].endswith(":"):
            out[-1] = out[-1] + " " + line.strip()
        else:
            out.append(line)
    return out


def parse_playbook(text: str) -> PlaybookRun:
    """PLAY RECAP counts and profile_tasks' TASKS RECAP of one playbook's output."""
    run = PlaybookRun()
    lines = clean_lines(text)
    in_recap = False
    task = ""
    for line in lines:
        header = TASK_HEADER.match(line)
        if header:
            task = header["name"]
        elif line.startswith("changed:") and task and task not in run.changed_tasks:
            run.changed_tasks.append(task)
        if not run.first_timestamp and PROFILE_DATE.match(line):
            run.first_timestamp = PROFILE_DATE.match(line).group(0)  # type: ignore[union-attr]
        host = PLAY_RECAP_HOST.match(line)
        if host:
            run.ok = (run.ok or 0) + int(host["ok"])
            run.changed = (run.changed or 0) + int(host["changed"])
            run.failed = (run.failed or 0) + int(host["failed"])
        if line.startswith("TASKS RECAP"):
            in_recap = True
            continue
        if not in_recap:
            continue
        total = RECAP_TOTAL.search(line)
        if total and run.total_seconds is None:
            h, m, s = int(total[4]), int(total[5]), float(total[6])
            run.total_seconds = round(h * 3600 + m * 60 + s, 1)
            continue
        timed = TASK_TIME.match(line.strip())
        if timed and not line.startswith("="):
            run.top_tasks.append((timed["name"].strip(), float(timed["seconds"])))
    return run


def _steps(text: str, scenario: str) -> list[tuple[str, str, str]]:
    """(action, status, output) per step of one Molecule scenario, in order."""
    steps: list[tuple[str, str, str]] = []
    current: str | None = None
    buf: list[str] = []
    for raw in text.splitlines():
        m = MOLECULE_STEP.match(ANSI.sub("", raw))
        if m and m["scenario"] != scenario:
            m = None
        if not m:
            if current:
                buf.append(raw)
            continue
        if m["what"].startswith("Executing"):
            current, buf = m["action"], []
        elif m["what"].startswith("Executed") and current == m["action"]:
            steps.append((current, m["what"].removeprefix("Executed: "), "\n".join(buf)))
            current = None
    return steps


def parse_molecule_log(text: str, scenario: str = "default") -> dict[str, Any]:
    """The converge and idempotence steps of one scenario in a Molecule log."""
    steps = _steps(text, scenario)
    created = any(a == "create" and s.startswith("Successful") for a, s, _ in steps)
    out: dict[str, Any] = {}
    for action, status, body in steps:
        if action not in ("converge", "idempotence"):
            continue
        run = parse_playbook(body)
        if run.total_seconds is None:
            continue
        entry = run.as_dict()
        entry["status"] = status
        if action == "converge":
            entry["fresh_target"] = created
        out[action] = entry  # the last one of each kind in this log
    return out


def molecule_timings(pattern: str | None = None, scenario: str = "default") -> dict[str, Any]:
    """First converge and no-op re-run of a scenario, from the newest log(s) that hold them."""
    pattern = pattern or os.environ.get("CCQ_BENCH_MOLECULE_LOG") or str(
        Path(__file__).resolve().parent / "results/tmp/molecule*.log")
    files = sorted((Path(p) for p in glob.glob(pattern) if Path(p).is_file()),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    if not files:
        return {"not_measured": "no Molecule log found (save one with `make molecule 2>&1 | tee "
                                "bench/results/tmp/molecule.log` or set CCQ_BENCH_MOLECULE_LOG)"}
    result: dict[str, Any] = {"searched": pattern, "scenario": scenario}
    for path in files:
        parsed = parse_molecule_log(path.read_text(encoding="utf-8", errors="replace"), scenario)
        for key, wanted in (("first_converge", "converge"), ("noop_rerun", "idempotence")):
            entry = parsed.get(wanted)
            if key in result or entry is None:
                continue
            if key == "first_converge" and not entry.get("fresh_target"):
                continue
            entry["log"] = str(path)
            result[key] = entry
    for key in ("first_converge", "noop_rerun"):
        result.setdefault(key, {"not_measured": f"no log under {pattern} holds that step"})
    return result


def become_needs_password() -> bool:
    """Whether `make provision` would have to ask for a sudo password."""
    if os.geteuid() == 0:
        return False
    try:
        return subprocess.run(["sudo", "-n", "true"], capture_output=True, timeout=10,
                              check=False).returncode != 0
    except (OSError, subprocess.TimeoutExpired):
        return True


def noop_rerun_local(repo: Path, venv_bin: Path, workdir: Path, registry: Registry,
                     timeout: float) -> dict[str, Any]:
    """Wall time of `make provision` on an already provisioned machine.

    When the first run still changes something (the roles changed since the
    machine was last provisioned), that run was a catch-up, not a no-op: it is
    reported as such and the playbook runs once more, and that second run is
    the no-op re-run.
    """
    if not PROVISIONED_MARKER.exists():
        return {"not_measured": "machine not provisioned "
                                f"({PROVISIONED_MARKER} missing; the benchmark does not provision)"}
    playbook = venv_bin / "ansible-playbook"
    if not playbook.exists():
        return {"not_measured": f"{playbook} missing (run `make venv`)"}
    if become_needs_password():
        return {"not_measured": "become needs a sudo password (make provision would ask)"}
    started = time.monotonic()
    first = _playbook_once(repo, playbook, venv_bin, workdir / "provision-run1.log", registry, timeout)
    if first.get("changed") in (None, 0) or "not_measured" in first:
        return first
    left = timeout - (time.monotonic() - started)
    if left < 30:
        first["note"] = "the run changed something; no time left for a second (no-op) run"
        return first
    second = _playbook_once(repo, playbook, venv_bin, workdir / "provision-run2.log", registry, left)
    second["catch_up_run"] = {k: first.get(k) for k in ("wall_seconds", "changed", "changed_tasks")}
    return second


def _playbook_once(repo: Path, playbook: Path, venv_bin: Path, log: Path, registry: Registry,
                   timeout: float) -> dict[str, Any]:
    """One `ansible-playbook site.yml`: wall time and what its output says."""
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1",
               PATH=f"{venv_bin}:{os.environ.get('PATH', '')}")
    t0 = time.monotonic()
    proc = registry.spawn([str(playbook), "site.yml"], log=log, env=env, cwd=repo)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        registry.stop(proc)
        return {"not_measured": f"timed out after {timeout:.0f}s (log: {log})"}
    wall = time.monotonic() - t0
    registry.stop(proc)
    run = parse_playbook(log.read_text(encoding="utf-8", errors="replace"))
    out = run.as_dict()
    out.update({"wall_seconds": round(wall, 1), "returncode": proc.returncode, "log": str(log)})
    return out
