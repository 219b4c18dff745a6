#!/usr/bin/env python3
"""Re-record what ccq's LiteLLM patches check at start, from the LiteLLM the lock installs
(`make record-patch-sources`; docs/upgrading.md).

ccq_proxy/litellm_patches.py refuses to start unless LiteLLM is PATCHED_LITELLM_VERSION (ccq_proxy/
guard.py) and every function it patches has the source hash it recorded (PATCHED_SOURCES); the
stream fast path (ccq_proxy/stream_fastpath.py) does the same with FINGERPRINTS and
PATCHED_OPENAI_SERIES, and the start-up cut (ccq_proxy/startup.py) with FILE_FINGERPRINTS.
After a pin moves (roles/ccq/defaults/main.yml, then `make lock-litellm`), this script:

1. builds (or reuses) the tests' venv from the new lock (tests/helpers/installs.py),
2. hashes every patched and fingerprinted function there, as the guard does,
3. writes the pins into guard.py and the new hashes into the two tables' files, and
4. prints, per file, which functions changed: their patches were written against the old
   source and may no longer apply. Read each against its new source before `make test`.

``--check`` only reports, and exits 1 when anything would change (nothing is written).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from helpers.installs import ensure_litellm_venv, read_pins  # noqa: E402

FILES = REPO / "roles/litellm_proxy/files"
PACKAGE = FILES / "ccq_proxy"
GUARD, PATCHES, FASTPATH = PACKAGE / "guard.py", PACKAGE / "litellm_patches.py", PACKAGE / "stream_fastpath.py"
STARTUP = PACKAGE / "startup.py"

# Run by the venv's Python, with the role's files on sys.path (as custom_callbacks.py puts
# them): the recorded and the current hashes of both tables, as JSON.
HASHES = """
import json, sys
from ccq_proxy import guard, litellm_patches as patches, startup, stream_fastpath as fastpath
print(json.dumps({
    sys.argv[1]: [dict(patches.PATCHED_SOURCES), guard.source_hashes(patches.patched_functions())],
    sys.argv[2]: [dict(fastpath.FINGERPRINTS), guard.source_hashes(fastpath.reproduced_functions())],
    sys.argv[3]: [dict(startup.FILE_FINGERPRINTS), startup.file_hashes()],
}))
"""


def rewritten(text: str, recorded: dict[str, str], now: dict[str, str]) -> str:
    for name, digest in now.items():
        if name in recorded and recorded[name] != digest:
            text, count = re.subn(rf'("{re.escape(name)}":\s*)"{recorded[name]}"', rf'\g<1>"{digest}"', text)
            if count != 1:
                raise SystemExit(f"cannot find {name!r}'s recorded hash to replace")
    return text


def with_pins(text: str, litellm: str, openai_series: str) -> str:
    text = re.sub(r'(?m)^PATCHED_LITELLM_VERSION = "[^"]*"', f'PATCHED_LITELLM_VERSION = "{litellm}"', text)
    return re.sub(r'(?m)^PATCHED_OPENAI_SERIES = "[^"]*"', f'PATCHED_OPENAI_SERIES = "{openai_series}"', text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report only; exit 1 when anything differs")
    args = parser.parse_args()
    pins = read_pins()
    series = re.fullmatch(r">=(\d+\.\d+)\.\d+,<[\d.]+", pins.openai_spec)
    if not series:
        raise SystemExit(f"ccq_openai_version_spec {pins.openai_spec!r} is not '>=A.B.C,<D': "
                         "one openai series is patched")
    openai_series = series.group(1) + "."
    venv = ensure_litellm_venv(pins)
    print(f"LiteLLM {pins.litellm_version} with openai {pins.openai_spec}, from the lock: {venv}")
    # No bytecode: the role copies ccq_proxy/ whole, a __pycache__ in it would be deployed too.
    result = subprocess.run([str(venv / "bin/python"), "-c", HASHES, str(PATCHES), str(FASTPATH), str(STARTUP)],
                            capture_output=True, text=True, check=False,
                            env={**os.environ, "PYTHONPATH": str(FILES), "PYTHONDONTWRITEBYTECODE": "1"})
    if result.returncode != 0:
        print(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit {result.returncode}",
              file=sys.stderr)
        print("The patch modules do not load against this LiteLLM: fix the import or the function named above.",
              file=sys.stderr)
        return 1
    tables = json.loads(result.stdout)
    differs = False
    for path in (PATCHES, FASTPATH, STARTUP):
        recorded, now = tables[str(path)]
        changed = sorted(name for name in recorded.keys() & now.keys() if recorded[name] != now[name])
        unrecorded, gone = sorted(now.keys() - recorded.keys()), sorted(recorded.keys() - now.keys())
        text = path.read_text(encoding="utf-8")
        new_text = rewritten(text, recorded, now)
        differs |= new_text != text or bool(unrecorded or gone)
        print(f"\n{path.relative_to(REPO)}: {len(now) - len(changed) - len(unrecorded)} of {len(now)} recorded sources "
              f"unchanged since they were recorded")
        for name in changed:
            print(f"  CHANGED  {name}: {recorded[name]} -> {now[name]}; its patch may no longer apply: "
                  "read it against the new source")
        for name in unrecorded:
            print(f"  NEW      {name}: {now[name]}; add it to the table by hand")
        for name in gone:
            print(f"  GONE     {name}: recorded, but the module no longer hashes it; remove it")
        if new_text != text and not args.check:
            path.write_text(new_text, encoding="utf-8")
            print(f"  written: {len(changed)} new hash(es)")
    text = GUARD.read_text(encoding="utf-8")
    new_text = with_pins(text, pins.litellm_version, openai_series)
    differs |= new_text != text
    if new_text != text:
        print(f"\n{GUARD.relative_to(REPO)}: the pins differ from the lock's "
              f"(LiteLLM {pins.litellm_version}, openai {openai_series}x)")
        if not args.check:
            GUARD.write_text(new_text, encoding="utf-8")
            print("  written: the pins")
    if args.check:
        print("\n" + ("Something differs: run `make record-patch-sources`, review the CHANGED patches, then make test."
                      if differs else "The recorded hashes and pins are the lock's LiteLLM's."))
        return 1 if differs else 0
    print("\nNext: review each CHANGED patch, then `make unit integration` (docs/upgrading.md).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
