"""Python runs this at the start of the proxy, before LiteLLM is imported.

The proxy's environment file (roles/litellm_proxy/templates/litellm.env.j2) puts this
directory on PYTHONPATH, and Python imports ``sitecustomize`` from the path at start-up
(the site module). Only the proxy's process has that environment. What it does is
ccq_proxy/startup.py's: what holds ccq_proxy goes on sys.path for it, as custom_callbacks.py
does later for LiteLLM. Deployed, that is the zip file ccq_proxy.zip (this file is
ccq_proxy.zip/ccq_proxy/before_litellm/sitecustomize.py); in the source tree, roles/litellm_proxy/files.
"""

import sys
from pathlib import Path

_CONFIG_DIR = str(Path(__file__).resolve().parents[2])
if _CONFIG_DIR not in sys.path:
    sys.path.insert(0, _CONFIG_DIR)

from ccq_proxy import startup  # noqa: E402

startup.install()
