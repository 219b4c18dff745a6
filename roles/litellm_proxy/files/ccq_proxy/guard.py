"""The guard of ccq's code written against LiteLLM 1.74.0.post2 internals.

One version guard (``Guard``), one source fingerprint (``source_hash``) and one patch
marker (``mark``) serve the patches (litellm_patches.py) and the stream fast path
(stream_fastpath.py) alike.  LiteLLM must be exactly PATCHED_LITELLM_VERSION (and openai
PATCHED_OPENAI_SERIES for the fast path), and each LiteLLM/openai function a patch
replaces, or the fast path reproduces, must hash to the value recorded from that version
(litellm_patches.PATCHED_SOURCES, stream_fastpath.FINGERPRINTS); otherwise the proxy
refuses to start (RuntimeError) and names the setting that runs without the refused part:
a silent mismatch would quietly bring back merged tool calls or truncated answers taken
as final.  ``make record-patch-sources`` (scripts/record_patch_sources.py) rewrites the
pins here and the recorded hashes after a pin moves (docs/upgrading.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

PATCHED_LITELLM_VERSION = "1.74.0.post2"
# The openai release series the role installs beside it (the fast path reads its streams).
PATCHED_OPENAI_SERIES = "1.99."
PATCH_MARK = "_ccq_patched"


def installed_version(package: str) -> str:
    """The installed version of ``package`` (as pip sees it)."""
    from importlib.metadata import version

    return version(package)


def source_hash(fn: Callable[..., Any]) -> str:
    """sha256 (first 16 hex) of ``inspect.getsource(fn)``.

    inspect.getsource follows ``__wrapped__``, so a function ccq has wrapped (``mark``
    sets it) hashes as the LiteLLM original it wraps.
    """
    import hashlib
    import inspect

    return hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()[:16]


def source_hashes(functions: Mapping[str, Callable[..., Any]]) -> dict[str, str]:
    """``source_hash`` of each function, by name (to compare with, or (re)record, a table)."""
    return {name: source_hash(fn) for name, fn in functions.items()}


def mark(patch: Callable[..., Any], original: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``patch`` as ccq's (a second load of the callback finds it in place) and
    let source fingerprints see ``original`` through it."""
    setattr(patch, PATCH_MARK, True)
    patch.__wrapped__ = original  # type: ignore[attr-defined]
    return patch


def is_marked(fn: Any) -> bool:
    """Whether ``fn`` is one of ccq's patches."""
    return bool(getattr(fn, PATCH_MARK, False))


class Guard(NamedTuple):
    """A part of ccq written against LiteLLM 1.74.0.post2 internals.

    what: names the part in a refusal.  off: the setting that runs without it.
    openai_series: the openai release series it also needs ("": any).
    """

    what: str
    off: str
    openai_series: str = ""

    def require_version(self, litellm: str | None = None) -> None:
        """Refuse (RuntimeError) any LiteLLM but 1.74.0.post2, and any other openai series."""
        found = litellm or installed_version("litellm")
        if found != PATCHED_LITELLM_VERSION:
            raise RuntimeError(
                f"{self.what} is written for LiteLLM {PATCHED_LITELLM_VERSION} internals, but LiteLLM "
                f"{found} is installed. Install litellm[proxy]=={PATCHED_LITELLM_VERSION}, or set {self.off}.")
        openai = installed_version("openai") if self.openai_series else ""
        if not openai.startswith(self.openai_series):
            raise RuntimeError(f"{self.what} needs openai {self.openai_series}x, but openai {openai} "
                               f"is installed; set {self.off}.")

    def require_sources(self, recorded: Mapping[str, str], functions: Mapping[str, Callable[..., Any]]) -> None:
        """Refuse (RuntimeError) when a function's source hash differs from the recorded one
        (or one of the two tables names a function the other does not)."""
        now = source_hashes(functions)
        changed = sorted(name for name in set(recorded) | set(now) if now.get(name) != recorded.get(name))
        if changed:
            raise RuntimeError(f"{self.what}: the LiteLLM/openai source differs from LiteLLM "
                               f"{PATCHED_LITELLM_VERSION}'s in {changed}; set {self.off}.")
