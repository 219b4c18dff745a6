"""Which hosts are ready, and why the others are not: the last lines of every ccq play.

Over a team's inventory a failed host scrolls away among the others' task lines, and Ansible's
recap gives counts, not reasons. This callback keeps each host's last failure (a host stops at
the failure no rescue takes back; ignore_errors ones do not count) or its unreachable message,
and prints one line per host after the recap. A no_log task's result reaches callbacks already censored, so no
secret can reach these lines.
"""

from __future__ import annotations

DOCUMENTATION = """
    name: ccq_summary
    type: aggregate
    short_description: One line per host at the end of a run, ready or the reason it failed
    description:
      - After the play recap, prints which hosts ended ready and, for every other host, the
        task that failed (or that it was unreachable) with the first line of its message.
    requirements:
      - enabled in ansible.cfg (callbacks_enabled)
"""

from ansible.plugins.callback import CallbackBase  # noqa: E402 - Ansible's layout: DOCUMENTATION first

# A message longer than this is cut: the line must stay readable in a terminal.
REASON_MAX_CHARS = 300


def _first_line(result: dict) -> str:
    """The message a failed or unreachable task gave, as one line."""
    if "censored" in result:
        return "its output is hidden (no_log: it handles a secret); rerun with -v on this host"
    for key in ("msg", "stderr", "module_stderr", "stdout"):
        text = str(result.get(key) or "").strip()
        if text:
            line = " ".join(text.split())
            return line if len(line) <= REASON_MAX_CHARS else line[: REASON_MAX_CHARS - 1] + "…"
    return "no message"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "ccq_summary"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._reasons: dict[str, str] = {}

    def _keep(self, result, prefix: str) -> None:
        host = result._host.get_name()
        self._reasons[host] = f"{prefix}{result._task.get_name()}: {_first_line(result._result)}"

    def v2_runner_on_failed(self, result, ignore_errors: bool = False) -> None:
        if not ignore_errors:
            self._keep(result, "")

    def v2_runner_item_on_failed(self, result) -> None:
        if not result._task.ignore_errors:
            self._keep(result, "")

    def v2_runner_on_unreachable(self, result) -> None:
        self._keep(result, "unreachable at ")

    def v2_playbook_on_stats(self, stats) -> None:
        hosts = sorted(stats.processed)
        if not hosts:
            return
        failed = [h for h in hosts if stats.failures.get(h) or stats.dark.get(h)]
        lines = [f"ccq: {len(hosts) - len(failed)} of {len(hosts)} host(s) ready"]
        for host in hosts:
            if host in failed:
                lines.append(f"  FAILED  {host}: {self._reasons.get(host, 'failed')}")
            else:
                lines.append(f"  ready   {host}")
        self._display.display("\n".join(lines), screen_only=False)
