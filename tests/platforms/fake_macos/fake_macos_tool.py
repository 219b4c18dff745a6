"""Stand-ins for the macOS command-line tools the Darwin task files call.

Only for running the Darwin path of the roles on Linux (tests/platforms). One script plays
brew, launchctl, security, dscacheutil and plutil, chosen by its first argument. Each call is
appended to ``$CCQ_FAKE_MACOS_STATE/calls.log`` (one JSON array per line) so tests can assert
which commands ran, and launchctl and brew keep their state (loaded jobs, installed formulae)
in that directory, so that a second converge sees what the first one did.

Behaviour follows the real tools where the roles depend on it:

* ``launchctl print gui/<uid>`` fails unless ``CCQ_FAKE_GUI=1`` (no GUI session over SSH/CI);
  ``print <domain>/<label>`` succeeds only for a bootstrapped job.
* ``launchctl bootstrap`` refuses an invalid plist, a domain that does not exist and a job
  that is already loaded (``5: Input/output error``, as macOS 14 does);
  ``bootout`` of a job that is not loaded exits 3 (``No such process``).
* ``dscacheutil -q user -a name <n>`` prints a record whose home is ``CCQ_FAKE_HOME``, and
  nothing (exit 0) for ``ccq-no-such-user``.
"""

from __future__ import annotations

import json
import os
import plistlib
import sys
from pathlib import Path

FAKE_SYSTEM_ROOT = """-----BEGIN CERTIFICATE-----
MIIBkzCCATmgAwIBAgIUCSpT7o3r6bMUL8lrydOxczuzqPcwCgYIKoZIzj0EAwIw
HzEdMBsGA1UEAwwUY2NxIGZha2Ugc3lzdGVtIHJvb3QwHhcNMjYxMTI1MTcyMjA0
WhcNMzYxMTIyMTcyMjA0WjAfMR0wGwYDVQQDDBRjY3EgZmFrZSBzeXN0ZW0gcm9v
dDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABOYVw3az1YgChh8wqpPI1En4tXhv
+QZ5F+MDhxM4yZ393iCrGwcz0PZ9HaansKJwXNSyxNt+oXPxFrAHCs3rpb2jUzBR
MB0GA1UdDgQWBBRxlo+33N5KTCiMPBcTuUP+jiV7SjAfBgNVHSMEGDAWgBRxlo+3
3N5KTCiMPBcTuUP+jiV7SjAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gA
MEUCIFxtGoKsAryIkcJ094wBsZZVcknrit8fvi8FkfhAvKJjAiEAkkD6b5qpgQ8q
K9IcKRCHRvQqArzW+Hq5mU1+RVL6YCw=
-----END CERTIFICATE-----
"""
MISSING_USER = "ccq-no-such-user"


def state_dir() -> Path:
    path = Path(os.environ["CCQ_FAKE_MACOS_STATE"])
    path.mkdir(parents=True, exist_ok=True)
    return path


def record_call(argv: list[str]) -> None:
    with (state_dir() / "calls.log").open("a", encoding="utf-8") as log:
        log.write(json.dumps(argv) + "\n")


def job_marker(domain: str, label: str) -> Path:
    return state_dir() / ("loaded-" + domain.replace("/", "_") + "-" + label)


def domain_exists(domain: str) -> bool:
    kind, _, uid = domain.partition("/")
    if not uid.isdigit():
        return False
    return kind == "user" or (kind == "gui" and os.environ.get("CCQ_FAKE_GUI") == "1")


def launchctl(args: list[str]) -> int:
    verb = args[0] if args else ""
    if verb == "print" and len(args) == 2:
        kind, uid, label = (args[1].split("/", 2) + ["", ""])[:3]
        domain = f"{kind}/{uid}"
        if not domain_exists(domain):
            print(f"Could not find domain for {domain}", file=sys.stderr)
            return 113
        if label and not job_marker(domain, label).exists():
            print(f"Could not find service \"{label}\" in domain for {domain}", file=sys.stderr)
            return 113
        print(f"{args[1]} = {{\n\tstate = running\n}}")
        return 0
    if verb == "bootstrap" and len(args) == 3:
        domain, plist_path = args[1], Path(args[2])
        if not domain_exists(domain):
            print("Bootstrap failed: 125: Domain does not support specified action", file=sys.stderr)
            return 125
        try:
            label = plistlib.loads(plist_path.read_bytes())["Label"]
        except Exception:  # noqa: BLE001 - any unreadable plist is what launchd rejects
            print("Bootstrap failed: 5: Input/output error", file=sys.stderr)
            return 5
        marker = job_marker(domain, label)
        if marker.exists():
            print("Bootstrap failed: 5: Input/output error", file=sys.stderr)
            return 5
        marker.write_text(str(plist_path), encoding="utf-8")
        return 0
    if verb == "bootout" and len(args) == 2:
        kind, uid, label = (args[1].split("/", 2) + ["", ""])[:3]
        marker = job_marker(f"{kind}/{uid}", label)
        if not marker.exists():
            print("Boot-out failed: 3: No such process", file=sys.stderr)
            return 3
        marker.unlink()
        return 0
    print(f"fake launchctl: unsupported {args}", file=sys.stderr)
    return 64


def brew(args: list[str]) -> int:
    installed_file = state_dir() / "brew-installed.json"
    installed = set(json.loads(installed_file.read_text())) if installed_file.exists() else set()
    installed |= set(filter(None, os.environ.get("CCQ_FAKE_BREW_INSTALLED", "").split(",")))
    prefix = os.environ.get("CCQ_FAKE_BREW_PREFIX", "/opt/homebrew")
    if args[:1] == ["--prefix"]:
        print(f"{prefix}/opt/{args[1]}" if len(args) > 1 else prefix)
        return 0
    names = [a for a in args[1:] if not a.startswith("-")]
    if args[:1] == ["info"]:
        formulae = [{"name": n, "full_name": n, "tap": "homebrew/core", "aliases": [], "oldnames": [],
                     "installed": [{"version": "1.0"}] if n in installed else [], "outdated": False}
                    for n in names]
        print(json.dumps({"formulae": formulae, "casks": []}))
        return 0
    if args[:1] == ["install"]:
        installed_file.write_text(json.dumps(sorted(installed | set(names))))
        return 0
    print(f"fake brew: unsupported {args}", file=sys.stderr)
    return 64


def security(args: list[str]) -> int:
    if args[:3] == ["find-certificate", "-a", "-p"]:
        print(FAKE_SYSTEM_ROOT, end="")
        return 0
    print(f"fake security: unsupported {args}", file=sys.stderr)
    return 64


def dscacheutil(args: list[str]) -> int:
    if args[:4] != ["-q", "user", "-a", "name"] or len(args) != 5:
        print(f"fake dscacheutil: unsupported {args}", file=sys.stderr)
        return 64
    if args[4] != MISSING_USER:
        print(f"name: {args[4]}\npassword: ********\nuid: {os.environ.get('CCQ_FAKE_UID', '501')}\n"
              f"gid: 20\ndir: {os.environ['CCQ_FAKE_HOME']}\nshell: /bin/zsh\ngecos: Test User\n")
    return 0


def plutil(args: list[str]) -> int:
    path = Path(args[-1])
    try:
        plistlib.loads(path.read_bytes())
    except Exception as err:  # noqa: BLE001 - report any parse error as plutil does
        print(f"{path}: {err}")
        return 1
    print(f"{path}: OK")
    return 0


TOOLS = {"launchctl": launchctl, "brew": brew, "security": security, "dscacheutil": dscacheutil,
         "plutil": plutil}


def main() -> int:
    tool, args = sys.argv[1], sys.argv[2:]
    record_call([tool, *args])
    return TOOLS[tool](args)


if __name__ == "__main__":
    sys.exit(main())
