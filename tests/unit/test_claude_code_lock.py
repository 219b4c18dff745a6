"""The committed Claude Code lock (roles/claude_code/files/claude-code-lock, `make lock-claude-code`).

Every machine and the test suite install exactly what it says, so it must pin ccq's Claude Code
version, carry the registry's sha512 for every package, the platform packages included, and name
nothing but the public npm registry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from scripts.locks import CLAUDE_CODE_LOCK_DIR, claude_code_install, claude_code_lock, read_pins

LOCK = claude_code_lock()
PACKAGE = claude_code_install().package
MAIN = LOCK["packages"][f"node_modules/{PACKAGE}"]
LOCKED = {path: entry for path, entry in LOCK["packages"].items() if path}
SHA512 = re.compile(r"sha512-[A-Za-z0-9+/]{86}==")
# The platforms ccq provisions (Debian/Ubuntu on x64 and arm64, macOS on Intel and Apple
# silicon); install.cjs links the native binary from the one of these that fits.
CCQ_PLATFORMS = ("linux-x64", "linux-arm64", "darwin-x64", "darwin-arm64")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_the_lock_pins_ccqs_claude_code_version():
    version = read_pins().claude_code_version
    assert MAIN["version"] == version
    package_json = json.loads((CLAUDE_CODE_LOCK_DIR / "package.json").read_text())
    # Exact, not a range: npm ci refuses a lock that does not satisfy package.json.
    assert package_json["dependencies"] == {PACKAGE: version}
    assert LOCK["packages"][""]["dependencies"] == {PACKAGE: version}


def test_the_lock_is_lockfile_version_3():
    assert LOCK["lockfileVersion"] == 3


@pytest.mark.parametrize("path", sorted(LOCKED))
def test_every_package_has_the_registrys_sha512(path):
    assert SHA512.fullmatch(LOCKED[path].get("integrity", "")), LOCKED[path]


@pytest.mark.parametrize("path", sorted(LOCKED))
def test_every_package_comes_from_the_public_npm_registry(path):
    name = path.removeprefix("node_modules/")
    entry = LOCKED[path]
    assert entry["resolved"].startswith(f"https://registry.npmjs.org/{name}/-/")
    assert not entry.get("link")


def test_every_platform_package_is_locked_at_the_same_version():
    optional = MAIN["optionalDependencies"]
    assert len(optional) == 8
    for platform in CCQ_PLATFORMS:
        assert f"{PACKAGE}-{platform}" in optional
    for name, version in optional.items():
        entry = LOCKED.get(f"node_modules/{name}")
        assert entry is not None, f"{name} is not in the lock"
        assert entry["version"] == version == MAIN["version"]
        assert entry["optional"] is True
    assert set(LOCKED) == {f"node_modules/{name}" for name in [PACKAGE, *optional]}


def test_the_lock_names_no_local_path():
    for name in ("package.json", "package-lock.json"):
        data = json.loads((CLAUDE_CODE_LOCK_DIR / name).read_text())
        local = [text for text in _strings(data)
                 if text.startswith(("/", "~", "file:", "link:")) or re.match(r"[A-Za-z]:\\", text)]
        assert local == [], name
