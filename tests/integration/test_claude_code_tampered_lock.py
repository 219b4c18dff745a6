"""npm refuses Claude Code whose bytes are not the committed lock's (the real npm registry).

The role's own npm ci command line (roles/claude_code/vars/main.yml) runs against a copy of the
committed lock with one integrity changed; the untampered lock installing with the same command
line is the claude_code_bin fixture (tests/helpers/installs.py), which this test also uses so that
the large platform package is already in npm's cache.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from scripts.locks import CLAUDE_CODE_LOCK_DIR, CLAUDE_CODE_LOCK_FILES, claude_code_install

pytestmark = pytest.mark.integration


def _flip_one_bit(integrity: str) -> str:
    """The same algorithm and length, one bit of the digest different."""
    algorithm, digest = integrity.split("-", 1)
    raw = bytearray(base64.b64decode(digest))
    raw[0] ^= 1
    return f"{algorithm}-{base64.b64encode(bytes(raw)).decode()}"


def test_a_tampered_integrity_fails_the_install(tmp_path: Path, claude_code_bin: Path):
    install = claude_code_install()
    for name in CLAUDE_CODE_LOCK_FILES:
        shutil.copyfile(CLAUDE_CODE_LOCK_DIR / name, tmp_path / name)
    lock_file = tmp_path / "package-lock.json"
    lock = json.loads(lock_file.read_text())
    main = lock["packages"][f"node_modules/{install.package}"]
    main["integrity"] = _flip_one_bit(main["integrity"])
    lock_file.write_text(json.dumps(lock, indent=2))

    proc = subprocess.run(install.npm_ci_argv, cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, check=False)

    assert proc.returncode != 0
    assert "EINTEGRITY" in proc.stdout + proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "node_modules" / install.package).exists()
