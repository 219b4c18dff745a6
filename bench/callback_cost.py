#!/usr/bin/env python3
"""The callbacks' own cost per call on a full-size Claude Code request (prints JSON).

Run with the LiteLLM venv's interpreter, so each callback module imports the
real LiteLLM as it does inside the proxy.  ccq's figures come from
bench/bench_callback.py's ``measure()`` (the request it builds: the
largest captured request topped up to 24 tools, about 78 KB).  The blog
recipe's hook edits the request in place, so both hooks are also timed on
fresh deep copies of that request (made before the clock starts), which puts
them on equal terms.

    <litellm-venv>/bin/python bench/callback_cost.py [--repeat 5] [--calls 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RECIPE_CALLBACK = REPO / "tests/fixtures/recipe_callback/custom_callbacks.py"
sys.path[:0] = [str(REPO / "bench"), str(REPO / "tests")]

import bench_callback  # noqa: E402  (bench/)
from helpers.callback_support import cerebras_policy, full_size_request, load_callbacks  # noqa: E402
from helpers.modules import load_file  # noqa: E402


def time_hook_on_copies(hook: Any, request: dict[str, Any], calls: int, repeat: int,
                        call_type: str) -> dict[str, float]:
    """Microseconds per awaited async_pre_call_hook, each call on its own copy."""
    encoded = json.dumps(request)
    loop = asyncio.new_event_loop()
    per_call = []
    try:
        for _ in range(repeat):
            copies = [json.loads(encoded) for _ in range(calls)]

            async def run(batch: list[dict[str, Any]]) -> None:
                for data in batch:
                    await hook.async_pre_call_hook(None, None, data, call_type)

            t0 = time.perf_counter()
            loop.run_until_complete(run(copies))
            per_call.append((time.perf_counter() - t0) / calls * 1e6)
    finally:
        loop.close()
    return {"us_median": round(statistics.median(per_call), 1), "us_min": round(min(per_call), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    t0 = time.perf_counter()
    ccq = load_callbacks()  # the role's file, as bench_callback loads it
    import_ccq_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    recipe = load_file(RECIPE_CALLBACK, "recipe_custom_callbacks")
    import_recipe_s = time.perf_counter() - t0
    out: dict[str, Any] = {"bench_callback": bench_callback.measure(args.repeat)}
    request = full_size_request()
    ccq_hook = ccq.CcqAnthropicNormalizer(policy=cerebras_policy(), max_tokens_ceiling=16384)
    out["ccq_fresh_copies"] = time_hook_on_copies(ccq_hook, request, args.calls, args.repeat,
                                                  "text_completion")
    out["recipe_fresh_copies"] = time_hook_on_copies(recipe.SafeAnthropicNormalizer(), request,
                                                     args.calls, args.repeat, "text_completion")
    out["import_seconds"] = {"ccq": round(import_ccq_s, 2), "recipe_after_ccq": round(import_recipe_s, 2)}
    out["litellm_loaded"] = "litellm" in sys.modules
    print(json.dumps(out))


if __name__ == "__main__":
    main()
