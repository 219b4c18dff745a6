"""ccq's own Python files, loaded as modules from where the roles deploy them from.

LiteLLM loads the callback by file path (importlib.util.spec_from_file_location) without
registering it in sys.modules; the tests load every deployed file the same way, so a file
that only imports under pytest is caught. Stdlib only: a script the tests run in the pinned
LiteLLM venv imports it too, given ``PYTHONPATH=TESTS_DIR``.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

# What makes ``helpers`` importable (pytest.ini's pythonpath).
TESTS_DIR = Path(__file__).resolve().parents[1]
REPO = TESTS_DIR.parent
PROXY_FILES = REPO / "roles/litellm_proxy/files"
CALLBACK_FILE = PROXY_FILES / "custom_callbacks.py"
NORMALIZER_FILE = PROXY_FILES / "ccq_normalizer.py"
PATCHES_FILE = PROXY_FILES / "ccq_litellm_patches.py"
FASTPATH_FILE = PROXY_FILES / "ccq_stream_fastpath.py"
WIRE_FILE = PROXY_FILES / "ccq_anthropic_wire.py"
QUOTA_FILE = PROXY_FILES / "ccq_quota.py"
DOCTOR_FILE = REPO / "roles/ccq_doctor/files/ccq_doctor.py"


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


@functools.cache
def load_doctor() -> ModuleType:
    """The deployed ccq_doctor.py (stdlib only, so it loads in any venv)."""
    return load_file(DOCTOR_FILE, "ccq_doctor", register=True)
