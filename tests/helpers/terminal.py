"""A terminal a test types into and reads, as a person uses Claude Code: tmux.

``send-keys`` types and presses keys, ``capture-pane`` reads the screen. Every wait is for
something on the screen (a regular expression), polled until a deadline: never a fixed sleep.
Each screen a test waited for is appended to a log, so a run's captures can be read afterwards.

The commands go through ``run`` (argv in, stdout out), so the same driver works on this
machine (subprocess) and on a Molecule target (testinfra's host.run, as the account).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

Runner = Callable[[list[str]], str]


class ScreenTimeout(AssertionError):
    """What the test waited for did not appear; the message holds the last screen."""


@dataclass
class Terminal:
    """One tmux session: ``run`` executes a tmux argv and returns its stdout."""

    run: Runner
    session: str
    log: Path | None = None
    width: int = 160
    height: int = 50
    # How often the screen is read while waiting (a poll, not a wait for time).
    poll_interval: float = 0.2
    screens: list[str] = field(default_factory=list)

    def start(self, directory: str) -> None:
        """A new session running the account's login shell in ``directory`` (tmux's default
        command is the login shell, so the rc files and the cc/ccq functions are loaded)."""
        self.run(["tmux", "new-session", "-d", "-s", self.session, "-x", str(self.width), "-y", str(self.height),
                  "-c", directory])

    def close(self) -> None:
        self.run(["tmux", "kill-session", "-t", self.session])

    def type(self, text: str) -> None:
        """Type ``text`` literally (no key names)."""
        self.run(["tmux", "send-keys", "-t", self.session, "-l", text])

    def press(self, *keys: str) -> None:
        """Press tmux key names: Enter, Escape, Down, C-c, ..."""
        self.run(["tmux", "send-keys", "-t", self.session, *keys])

    def enter(self, text: str) -> None:
        """Type a line and press Enter (two sends: Claude Code's input treats a pasted newline as text)."""
        self.type(text)
        self.press("Enter")

    def screen(self) -> str:
        """The visible screen, trailing blanks removed."""
        shown = self.run(["tmux", "capture-pane", "-p", "-t", self.session])
        return "\n".join(line.rstrip() for line in shown.splitlines()).strip("\n")

    def scrollback(self) -> str:
        """The screen and everything scrolled off it."""
        return self.run(["tmux", "capture-pane", "-p", "-S", "-", "-t", self.session])

    def wait_for(self, pattern: str, timeout: float = 60.0, what: str = "", since: str = "") -> re.Match[str]:
        """Read the screen until ``pattern`` (a regular expression, multi-line) is on it.

        ``since``: only the part of the screen below the last line holding this text counts
        (a prompt the test typed), so an earlier answer does not satisfy a later wait.
        """
        return self.wait_for_any({what or pattern: pattern}, timeout, since)[1]

    def wait_for_any(self, patterns: dict[str, str], timeout: float = 60.0,
                     since: str = "") -> tuple[str, re.Match[str]]:
        """The first of ``patterns`` (name: regular expression) that appears, and its match."""
        deadline = time.monotonic() + timeout
        compiled = {name: re.compile(p, re.MULTILINE) for name, p in patterns.items()}
        shown = ""
        while True:
            shown = self.screen()
            visible = shown[shown.rfind(since):] if since and since in shown else ("" if since else shown)
            for name, regex in compiled.items():
                found = regex.search(visible)
                if found:
                    self.keep(f"waited for {name}", shown)
                    return name, found
            if time.monotonic() > deadline:
                self.keep(f"TIMED OUT waiting for {', '.join(patterns)}", shown)
                raise ScreenTimeout(f"not on the screen within {timeout:.0f} s: {', '.join(patterns)}\n"
                                    f"--- screen ---\n{shown}\n--------------")
            time.sleep(self.poll_interval)

    def keep(self, title: str, shown: str) -> None:
        """Append a capture to the log (and to ``screens``)."""
        self.screens.append(shown)
        if self.log is not None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with self.log.open("a", encoding="utf-8") as fh:
                fh.write(f"===== {time.strftime('%H:%M:%S')} {title}\n{shown}\n")


def answer_first_run_screens(terminal: Terminal, ready: str, screens: Iterable[tuple[str, str, tuple[str, ...]]],
                             timeout: float = 90.0) -> None:
    """Go through the screens a new user meets before the prompt, as a person would.

    ``screens``: (name, pattern, keys to press) for each screen that may come (theme, notes,
    trusting the folder), in any order; done when ``ready`` shows. A screen still showing
    after its keys (a dialog that was not taking keys yet) is answered again.
    """
    answers = {name: (pattern, keys) for name, pattern, keys in screens}
    deadline = time.monotonic() + timeout
    while True:
        patterns = {"ready": ready, **{name: pattern for name, (pattern, _) in answers.items()}}
        name, _ = terminal.wait_for_any(patterns, max(1.0, deadline - time.monotonic()))
        if name == "ready":
            return
        before = terminal.screen()
        terminal.press(*answers[name][1])
        # The screen changes once the keys are taken; wait for that, not for a time.
        end = time.monotonic() + 5
        while terminal.screen() == before and time.monotonic() < end:
            time.sleep(terminal.poll_interval)
