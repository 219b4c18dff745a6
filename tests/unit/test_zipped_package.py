"""plugins/action/ccq_zipped_package.py: the one zip file a role installs a Python package as.

The proxy's package (ccq_proxy.zip) and the doctor (a runnable zipapp) are built on the
controller at every run, so a run that changes nothing must build the same bytes; and what
the proxy's environment names must import from inside the file."""

from __future__ import annotations

import os
import zipfile
import zipimport
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


def test_the_proxys_environment_finds_its_start_up_inside_the_zip(tmp_path: Path) -> None:
    # litellm.env.j2 names PYTHONPATH=<config dir>/ccq_proxy.zip/ccq_proxy/before_litellm; Python's
    # zipimport finds sitecustomize there, and sitecustomize puts the zip itself (three levels up
    # from its file) on sys.path for the package.
    zipped = zip_package(PROXY_PACKAGE, tmp_path / "ccq_proxy.zip")
    spec = zipimport.zipimporter(f"{zipped}/ccq_proxy/before_litellm").find_spec("sitecustomize")
    assert spec is not None and spec.origin is not None
    assert Path(spec.origin).resolve().parents[2] == zipped.resolve()
    package = zipimport.zipimporter(str(zipped)).find_spec("ccq_proxy")
    assert package is not None and package.submodule_search_locations


def test_the_doctor_is_a_zipapp_that_runs_its_package(tmp_path: Path) -> None:
    # Run as a program by tests/integration/test_doctor_end_to_end.py.
    doctor = zip_package(DOCTOR_PACKAGE, tmp_path / "ccq_doctor.py", main=DOCTOR_PACKAGE.name)
    assert doctor.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    main = zipfile.ZipFile(doctor).read("__main__.py").decode()
    assert 'runpy.run_module("ccq_doctor", run_name="__main__")' in main
    assert doctor.stat().st_mode & 0o111
