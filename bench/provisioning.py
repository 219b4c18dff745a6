"""Provisioning timings: Molecule's first converge and no-op re-run on the test target.

The benchmark never runs the play on this machine: a re-run of ``make provision`` would
leave out the user's one-off ``-e`` settings and could change what they provisioned (issue 25).
Both figures come from Molecule's default scenario on a disposable target:
- ``measure_with_molecule`` runs it alone (create, prepare, converge, idempotence, destroy;
  about 3 minutes): the figure a quiet machine gives. `make bench` does when podman and the
  target image are here (`make test-image`), unless CCQ_BENCH_PROVISIONING=log.
- ``molecule_timings`` reads a Molecule log: ``make molecule`` keeps each scenario's in
  bench/results/tmp/molecule-<scenario>.log (run side by side with the other scenarios, so
  slower), or point ``CCQ_BENCH_MOLECULE_LOG`` at a file or a glob of files; the newest log
  that holds each step is used.

Both parse ansible.posix.profile_tasks (enabled in ansible.cfg): the total at
the head of TASKS RECAP and the slowest tasks below it.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Molecule 26 frames the playbook's output in a box and wraps long lines.
BOX_PREFIX = re.compile(r"^\s*[│┌└]\s?")
RECAP_TOTAL = re.compile(r"\((\d+):(\d\d):(\d\d(?:\.\d+)?)\)\s+(\d+):(\d\d):(\d\d(?:\.\d+)?)")
TASK_HEADER = re.compile(r"^(?:TASK|RUNNING HANDLER) \[(?P<name>.*?)\]")
TASK_TIME = re.compile(r"^(?P<name>.*?)\s-{2,}\s*(?P<seconds>\d+(?:\.\d+)?)s$")
PLAY_RECAP_HOST = re.compile(r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
                             r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)")
# A step's line, as Molecule writes it on a terminal ("default ➜ converge: Executing") and into a
# pipe, as `make molecule` keeps it ("[default > converge] Executing").
MOLECULE_STEP = re.compile(r"^(INFO|ERROR|WARNING|CRITICAL)\s+(?:(?P<scenario>\S+)\s+➜\s+(?P<action>[\w-]+):"
                           r"|\[(?P<piped_scenario>\S+) > (?P<piped_action>[\w-]+)\])\s+(?P<what>.*)$")
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
        if m and (m["scenario"] or m["piped_scenario"]) != scenario:
            m = None
        if not m:
            if current:
                buf.append(raw)
            continue
        action, what = m["action"] or m["piped_action"], m["what"]
        if what.startswith("Executing"):
            current, buf = action, []
        elif what.startswith("Executed") and current == action:
            steps.append((current, what.removeprefix("Executed: "), "\n".join(buf)))
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
        return {"not_measured": "no Molecule log found (`make molecule` keeps one per scenario in "
                                "bench/results/tmp/, or set CCQ_BENCH_MOLECULE_LOG)"}
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


REPO = Path(__file__).resolve().parents[1]
TARGET_IMAGE_BUILD = REPO / "tests/target_image/build.sh"
# The steps of a quiet run: a fresh target, the first converge, the no-op re-run.
QUIET_STEPS = ("destroy", "create", "prepare", "converge", "idempotence")


def measure_with_molecule(scenario: str = "default", log_path: Path | None = None) -> dict[str, Any]:
    """The scenario's first converge and no-op re-run, on a target of its own with nothing else
    running in Molecule; its target is destroyed afterwards whatever happened."""
    if os.environ.get("CCQ_BENCH_PROVISIONING", "run") == "log":
        return molecule_timings(scenario=scenario)
    molecule = Path(sys.executable).with_name("molecule")
    image = subprocess.run(["bash", str(TARGET_IMAGE_BUILD), "--print-ref"], capture_output=True,
                           text=True, check=False).stdout.strip()
    if not (shutil.which("podman") and molecule.exists() and image
            and subprocess.run(["podman", "image", "exists", image], check=False).returncode == 0):
        result = molecule_timings(scenario=scenario)
        result["quiet_run"] = "not run: needs podman and the target image (`make test-image`)"
        return result
    log_path = log_path or REPO / f"bench/results/tmp/molecule-bench-{scenario}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PATH": f"{molecule.parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "CCQ_TARGET_IMAGE": image}
    with log_path.open("w", encoding="utf-8") as log:
        try:
            for step in QUIET_STEPS:
                done = subprocess.run([str(molecule), step, "-s", scenario], cwd=REPO, env=env,
                                      stdout=log, stderr=subprocess.STDOUT, check=False)
                if done.returncode != 0:
                    break
        finally:
            subprocess.run([str(molecule), "destroy", "-s", scenario], cwd=REPO, env=env,
                           stdout=log, stderr=subprocess.STDOUT, check=False)
    return molecule_timings(str(log_path), scenario)
