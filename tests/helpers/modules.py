"""ccq's own Python files, loaded as modules from where the roles deploy them from.

LiteLLM loads the callback by file path (importlib.util.spec_from_file_location) without
registering it in sys.modules; the tests load custom_callbacks.py the same way, so a file
that only imports under pytest is caught, and import the package it imports (ccq_proxy/)
from the role's files, as custom_callbacks.py does. Stdlib only: a script the tests run in the pinned
LiteLLM venv imports it too, given ``PYTHONPATH=TESTS_DIR``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

# What makes ``helpers`` importable (pytest.ini's pythonpath).
TESTS_DIR = Path(__file__).resolve().parents[1]
REPO = TESTS_DIR.parent
PROXY_FILES = REPO / "roles/litellm_proxy/files"
CALLBACK_FILE = PROXY_FILES / "custom_callbacks.py"
# The package custom_callbacks.py imports, deployed beside it as one zip file (zip_package).
PROXY_PACKAGE = PROXY_FILES / "ccq_proxy"
# For a script the tests run on the role's files in another Python (the pinned LiteLLM
# venv): no __pycache__ of another Python's written into the source tree.
NO_BYTECODE_ENV = {"PYTHONDONTWRITEBYTECODE": "1"}
# The doctor package, which roles/ccq_doctor deploys as one runnable zip file.
DOCTOR_FILES = REPO / "roles/ccq_doctor/files"
DOCTOR_PACKAGE = DOCTOR_FILES / "ccq_doctor"
# The action the roles install a package with, as one zip file.
ZIPPED_PACKAGE_ACTION = REPO / "plugins/action/ccq_zipped_package.py"


def load_file(path: Path, name: str, register: bool = False) -> ModuleType:
    """``path`` as a module named ``name``; ``register`` puts it in sys.modules first, which
    a module defining dataclasses needs."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_proxy_module(name: str) -> ModuleType:
    """``ccq_proxy.<name>`` from the role's files, imported as custom_callbacks.py imports
    it (its directory on sys.path), without writing bytecode there (NO_BYTECODE_ENV)."""
    if str(PROXY_FILES) not in sys.path:
        sys.path.insert(0, str(PROXY_FILES))
    writes_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        return importlib.import_module(f"ccq_proxy.{name}")
    finally:
        sys.dont_write_bytecode = writes_bytecode


@functools.cache
def load_doctor() -> ModuleType:
    """The doctor package (stdlib only, so it loads in any venv), every module of it imported:
    ``load_doctor().checks.CHECKS``. Imported from its folder, as the deployed zipapp imports it."""
    if str(DOCTOR_FILES) not in sys.path:
        sys.path.insert(0, str(DOCTOR_FILES))
    package = importlib.import_module("ccq_doctor")
    for module in sorted(DOCTOR_PACKAGE.glob("*.py")):
        if not module.name.startswith("__"):
            importlib.import_module(f"ccq_doctor.{module.stem}")
    return package


def zip_package(package: Path, output: Path, main: str | None = None) -> Path:
    """``package`` as the roles deploy it: one zip file at ``output``, the bytes
    plugins/action/ccq_zipped_package.py builds (needs Ansible: the tests' venv, not LiteLLM's)."""
    action = load_file(ZIPPED_PACKAGE_ACTION, "ccq_zipped_package")
    output.write_bytes(action.zipped_package(package, main))
    output.chmod(0o755 if main else 0o600)
    return output


def build_doctor(output: Path) -> Path:
    """The doctor as the role deploys it: one runnable zipapp at ``output``."""
    return zip_package(DOCTOR_PACKAGE, output, main=DOCTOR_PACKAGE.name)
