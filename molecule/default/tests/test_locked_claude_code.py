"""The converged target's Claude Code is the committed lock's: npm ci's record of what it installed
(node_modules/.package-lock.json) has the lock's version and integrity for every package, and
claude on the user's PATH runs it."""

from __future__ import annotations

import json

from helpers.converged_host import as_user, converged_host
from scripts.locks import claude_code_install, claude_code_lock

TARGET = converged_host()
CLAUDE_CODE_DIR = TARGET.path("claude_code_dir")
LOCK = claude_code_lock()
PACKAGE = claude_code_install().package
MAIN = LOCK["packages"][f"node_modules/{PACKAGE}"]


def _installed(host) -> dict:
    record = host.file(f"{CLAUDE_CODE_DIR}/node_modules/.package-lock.json")
    assert record.exists, "npm ci has not completed in ccq's Claude Code directory"
    return json.loads(record.content_string)["packages"]


def test_every_installed_package_is_the_committed_locks(host):
    installed = _installed(host)
    assert f"node_modules/{PACKAGE}" in installed
    for path, entry in installed.items():
        committed = LOCK["packages"].get(path)
        assert committed is not None, f"{path} is not in the committed lock"
        assert (entry["version"], entry["integrity"]) == (committed["version"], committed["integrity"]), path


def test_the_platform_package_of_the_target_is_installed(host):
    arch = {"x86_64": "x64", "aarch64": "arm64"}[host.system_info.arch]
    assert f"node_modules/{PACKAGE}-linux-{arch}" in _installed(host)


def test_claude_on_the_path_runs_the_locked_claude_code(host):
    entry_point = host.file(f"{TARGET.path('bin_dir')}/claude")
    assert entry_point.is_symlink
    assert entry_point.linked_to.startswith(f"{CLAUDE_CODE_DIR}/node_modules/{PACKAGE}/")
    version = host.run(as_user("DISABLE_AUTOUPDATER=1 claude --version", login_shell=True))
    assert version.rc == 0, version.stderr
    assert version.stdout.startswith(MAIN["version"] + " ")


def test_no_global_copy_of_claude_code_is_left(host):
    assert not host.file(f"{TARGET.path('npm_prefix')}/lib/node_modules/{PACKAGE}").exists
