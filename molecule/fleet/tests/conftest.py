"""The fleet scenario's session fixtures: the stand-in Cerebras on the controller and the one
converge every test reads."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from fleet_support import FAKE_PORT, PROJECT, tail_from, team_play, vault_key


@pytest.fixture(scope="session")
def fake_upstream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in Cerebras, accepting only the vaulted key; yields its request log."""
    work = tmp_path_factory.mktemp("fake-cerebras")
    key_file = work / "key"
    key_file.write_text(vault_key())
    key_file.chmod(0o600)
    log = work / "requests.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(PROJECT / "tests/fake_cerebras/fake_cerebras.py"), "--port", str(FAKE_PORT),
         "--strict", "--tool-preference", "Agent,Task", "--api-key-file", str(key_file),
         "--request-log", str(log)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{FAKE_PORT}/health", timeout=2)
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "the stand-in Cerebras did not start"
            time.sleep(0.2)
    yield log
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def converged(fake_upstream: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """site.yml over the fleet, once for the whole session."""
    result, seconds = team_play("site.yml")
    print(f"\nfleet converge: {seconds:.0f} s\n" + tail_from(result.stdout, "PLAY RECAP"))
    return result, seconds
