"""A check's verdict, the check itself, and the two fixes most checks name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ccq_doctor.facts import Facts

OK, WARN, FAIL = "ok", "warn", "FAIL"


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


def restart_command(facts: Facts) -> str:
    return facts.manager.restart_command(facts.service)


def reprovision(facts: Facts, why: str = "") -> str:
    text = f"re-run the provisioning ({facts.settings.reprovision})"
    return f"{text}: {why}" if why else text
