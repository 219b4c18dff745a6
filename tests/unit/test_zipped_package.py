"""plugins/action/ccq_zipped_package.py: the one zip file a role installs a Python package as.

The proxy's package (ccq_proxy.zip) and the doctor (a runnable zipapp) are built on the
controller at every run, so a run that changes nothing must build the same bytes; and what
the proxy's environment names must import from inside the file."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers.modules import DOCTOR_PACKAGE, PROXY_PACKAGE, ZIPPED_PACKAGE_ACTION, load_file, zip_package

action = load_file(ZIPPED_PACKAGE_ACTION, "ccq_zipped_package")


def test_the_same_sources_give_the_same_bytes_whatever_their_dates(tmp_path: Path) -> None:
    first = action.zipped_package(PROXY_PACKAGE)
    for path in PROXY_PACKAGE.rglob("*.py"):
        os.utime(path)  # a fresh checkout's dates
    assert action.zipped_package(PROXY_PACKAGE) == first


def test_only_the_packages_sources_go_in_sorted_under_its_name(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub" / "__pycache__").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("B = 1\n")
    (package / "a.py").write_text("A = 1\n")
    (package / "sub" / "__pycache__" / "b.cpython-311.pyc").write_bytes(b"stale")
    (package / "notes.txt").write_text("not code")
    names = zipfile.ZipFile(zip_package(package, tmp_path / "pkg.zip")).namelist()
    assert names == ["pkg/__init__.py", "pkg/a.py", "pkg/sub/b.py"]


def test_a_directory_without_python_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"holds no \.py files"):
        action.zipped_package(tmp_path)


def test_the_proxys_environment_runs_its_start_up_from_inside_the_zip(tmp_path: Path) -> None:
    # As litellm.env.j2 names it: PYTHONPATH=<config dir>/ccq_proxy.zip/ccq_proxy/before_litellm.
    zipped = zip_package(PROXY_PACKAGE, tmp_path / "ccq_proxy.zip")
    done = subprocess.run(
        [sys.executable, "-c", "import ccq_proxy.startup as s; print(s.__file__)"],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": f"{zipped}/ccq_proxy/before_litellm",
             "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True, text=True, check=True, cwd=tmp_path)
    assert done.stdout.strip() == f"{zipped}/ccq_proxy/startup.py"


def test_the_doctor_is_a_runnable_zipapp(tmp_path: Path) -> None:
    doctor = zip_package(DOCTOR_PACKAGE, tmp_path / "ccq_doctor.py", main=DOCTOR_PACKAGE.name)
    assert doctor.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    assert "__main__.py" in zipfile.ZipFile(doctor).namelist()
    done = subprocess.run([sys.executable, str(doctor), "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "doctor" in done.stdout
