"""ccq's LiteLLM proxy callback: the file config.yaml names, beside it.

``litellm_settings.callbacks: custom_callbacks.proxy_handler_instance`` and
``general_settings.custom_auth: custom_callbacks.ccq_master_key_auth``.  The code is
the ccq_proxy package deployed beside this file as one zip file, ccq_proxy.zip
(ccq_proxy/__init__.py says which module does what); this file only imports it, makes
the hook and installs ccq's LiteLLM patches.
"""

from __future__ import annotations

import sys
from pathlib import Path

# LiteLLM 1.74 loads this file by path (get_instance_fn: spec_from_file_location beside
# config.yaml) and puts only its own working directory on sys.path (proxy_cli), so the
# package beside this file imports wherever the proxy was started only with this line.
# Deployed, Python imports it from the zip file (zipimport); in the source tree
# (roles/litellm_proxy/files), from the package directory beside this file.
_HERE = Path(__file__).resolve().parent
_PACKAGE_ROOT = str(_HERE / "ccq_proxy.zip") if (_HERE / "ccq_proxy.zip").is_file() else str(_HERE)
if _PACKAGE_ROOT not in sys.path:
    sys.path.insert(0, _PACKAGE_ROOT)

from ccq_proxy.hook import CcqAnthropicNormalizer, ccq_master_key_auth, install, proxy_policy  # noqa: E402

__all__ = ["ccq_master_key_auth", "proxy_handler_instance"]

# `ccq doctor` reads the class of proxy_handler_instance from this line.
proxy_handler_instance = CcqAnthropicNormalizer(policy=proxy_policy())
install(proxy_handler_instance)
