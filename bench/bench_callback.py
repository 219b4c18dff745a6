#!/usr/bin/env python3
"""Benchmark: the callback's cost per call on a full-size Claude Code request.

Not a test (it asserts nothing): it prints microseconds per call, for
``make bench`` and for humans.  The request is the captured full-size one
(tests/fixtures/claude_code_requests/full_01_main.json, about 77 KB) topped
up to 24 tools and about 78 KB, as issue 3 describes; without fixtures a
built request of the same size is used.  Target: under 300 us on a 2-core
laptop-class machine.

    .venv/bin/python bench/bench_callback.py [--repeat 7] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import timeit
from pathlib import Path

# Run as a script: tests (helpers) is not on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers.callback_support import cerebras_policy, full_size_request, load_callbacks
from helpers.modules import load_proxy_module


def measure(repeat: int) -> dict[str, object]:
    """Per-call timings of normalize_request and of the whole pre-call hook."""
    cc = load_callbacks()
    normalizer = load_proxy_module("normalizer")  # the module the hook runs
    policy = cerebras_policy()
    request = full_size_request()
    hook = cc.CcqAnthropicNormalizer(policy=policy, max_tokens_ceiling=16384)

    loop = asyncio.new_event_loop()

    async def hook_calls(number: int) -> None:
        # Awaited inside a running loop, as the proxy does.
        for _ in range(number):
            await hook.async_pre_call_hook(None, None, request, "text_completion")

    def normalize_calls(number: int) -> None:
        for _ in range(number):
            normalizer.normalize_request(request, policy, 16384)

    results: dict[str, object] = {
        "request_bytes": len(json.dumps(request, separators=(",", ":"))),
        "tools": len(request.get("tools", [])),
        "messages": len(request["messages"]),
        "python": sys.version.split()[0],
    }
    number = 2000
    runs = {
        "normalize_request": lambda: normalize_calls(number),
        "pre_call_hook": lambda: loop.run_until_complete(hook_calls(number)),
    }
    for name, func in runs.items():
        per_call = [t / number * 1e6 for t in timeit.repeat(func, repeat=repeat, number=1)]
        results[f"{name}_us_min"] = round(min(per_call), 1)
        results[f"{name}_us_median"] = round(statistics.median(per_call), 1)
    loop.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    results = measure(args.repeat)
    if args.json:
        print(json.dumps(results))
        return
    print(f"full-size request: {results['request_bytes']} bytes, {results['tools']} tools, "
          f"{results['messages']} messages (python {results['python']})")
    for name in ("normalize_request", "pre_call_hook"):
        print(f"{name:18s} {results[name + '_us_median']:8.1f} us/call median "
              f"({results[name + '_us_min']:.1f} min)")


if __name__ == "__main__":
    main()
