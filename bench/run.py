#!/usr/bin/env python3
"""`make bench`: what the proxy costs a fast Cerebras setup, next to its peers.

Every contender (direct to the fake upstream, ccq, the blog recipe's setup,
claude-code-router) runs in the same process tree on 127.0.0.1, in front of
the same fake Cerebras processes, and requests are interleaved (a different
contender goes first in each round), so the ratios hold on a noisy machine.
Each loop is bounded in count and in time.  Nothing is asserted: the numbers
and the targets of issues 7 and 8 are written side by side to
bench/results/RESULTS.md with PNG plots; raw data goes to bench/results/tmp/.

    .venv/bin/python bench/run.py [--quick]

Every process it starts is stopped on exit, on error and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import client, login, procs, provisioning, report, setups  # noqa: E402
from bench.stats import median, rotated, summary  # noqa: E402
from tests.helpers import installs  # noqa: E402

RESULTS = REPO / "bench/results"
FULL_REQUEST = REPO / "tests/fixtures/claude_code_requests/full_main.json"
FIXTURE_INDEX = REPO / "tests/fixtures/claude_code_requests/index.json"


@dataclass(frozen=True)
class Plan:
    """How much of everything: counts are upper bounds, budgets in seconds."""

    # The whole run, installs included.  Sections start no new work after
    # total_budget - reserve; what is in flight then ends within stream_timeout,
    # and the callback section and the report follow: `make bench` < 15 min.
    total_budget: float = 720
    reserve: float = 60
    startup_reps: int = 2
    small_requests: int = 200
    small_budget: float = 50
    full_requests: int = 20
    full_budget: float = 50
    relay_rounds: int = 3
    relay_budget: float = 180
    paced_rounds: int = 3
    paced_budget: float = 100
    stream_timeout: float = 90
    conc_levels: tuple[int, ...] = (1, 4, 16)
    conc_budget: float = 20  # per contender and level: no new stream after it
    callback_repeat: int = 5
    login_reps: int = 3


QUICK = Plan(total_budget=420, startup_reps=1, small_requests=40, small_budget=15, full_requests=6,
             full_budget=15, relay_rounds=1, relay_budget=60, paced_rounds=1, paced_budget=40,
             stream_timeout=60, conc_levels=(1, 4), conc_budget=10, callback_repeat=2, login_reps=1)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Deadline:
    """A point in time; every section's is capped by the run's (see ``start_clock``)."""

    run_end = float("inf")

    def __init__(self, seconds: float) -> None:
        self.end = min(time.monotonic() + seconds, Deadline.run_end)

    def passed(self) -> bool:
        return time.monotonic() > self.end

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())


def run_over() -> bool:
    """Whether the sections' share of the run's budget is spent."""
    return time.monotonic() > Deadline.run_end


def start_clock(plan: Plan, started: float) -> None:
    """Cap every later Deadline so the sections end ``plan.reserve`` s before the budget."""
    Deadline.run_end = started + plan.total_budget - plan.reserve


def stream_timeout(plan: Plan) -> float:
    """A stream's own bound.  Not shortened near the end of the run's budget: a
    cut stream would be a failure; instead no new stream starts after it."""
    return plan.stream_timeout


# --------------------------------------------------------------------------
# Requests: the same content for every contender
# --------------------------------------------------------------------------

@dataclass
class Route:
    """Where one contender sends one workload, and what."""

    port: int
    path: str
    payload: bytes
    headers: dict[str, str]


class Requests:
    """Builds each contender's request for each workload.

    Proxies get the Anthropic body Claude Code sends; ``direct`` gets the
    OpenAI body LiteLLM (ccq) sent upstream for the same request (captured
    once), or the OpenAI equivalent of the small bodies.
    """

    def __init__(self, ups: setups.Upstreams) -> None:
        self.ups = ups
        self.full = json.loads(FULL_REQUEST.read_text(encoding="utf-8"))
        self.direct_full: dict[str, Any] | None = None

    def anthropic(self, contender: setups.Contender, kind: str) -> dict[str, Any]:
        if kind in ("full", "full_stream"):
            body = dict(self.full)
            body.update(model=contender.model_for("small"), stream=kind == "full_stream")
            return body
        if kind == "conc":
            body = dict(self.full)
            body.update(model=contender.model_for("conc"), stream=True)
            return body
        body = {"model": contender.model_for(_workload(kind)), "max_tokens": 16000 if kind in (
            "stream", "paced", "warm_stream") else 16, "messages": [{"role": "user", "content": "ping"}]}
        if kind in ("stream", "paced", "warm_stream"):
            body["stream"] = True
        return body

    def openai(self, kind: str) -> dict[str, Any]:
        if kind in ("full", "full_stream", "conc"):
            if self.direct_full is None:
                raise RuntimeError("the upstream body of the full-size request was not captured")
            body = dict(self.direct_full)
            body["stream"] = kind != "full"
            if kind == "full":
                body.pop("stream_options", None)
            return body
        body = {"model": setups.UPSTREAM_MODEL, "messages": [{"role": "user", "content": "ping"}],
                "max_tokens": 16000 if kind in ("stream", "paced", "warm_stream") else 16}
        if kind in ("stream", "paced", "warm_stream"):
            body["stream"] = True
        return body

    def route(self, contender: setups.Contender, kind: str) -> Route:
        if contender.name == "direct":
            fake = self.ups.fakes[_workload(kind)]
            return Route(fake.port, "/v1/chat/completions", json.dumps(self.openai(kind)).encode(),
                         {"authorization": f"Bearer {self.ups.api_key}"})
        return Route(contender.port, "/v1/messages", json.dumps(self.anthropic(contender, kind)).encode(),
                     dict(contender.headers))


def _workload(kind: str) -> str:
    """Which fake answers a request kind."""
    return {"small": "small", "full": "small", "full_stream": "small", "stream": "stream",
            "paced": "paced", "conc": "conc", "warm_stream": "conc"}[kind]


# --------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------

def start_proxies(plan: Plan, venv: Path, cli: Path | None, ups: setups.Upstreams, run_dir: Path,
                  registry: procs.Registry) -> tuple[list[setups.Contender], dict[str, Any]]:
    """Start each proxy ``startup_reps`` times (interleaved); keep the last one running."""
    starters: dict[str, Callable[[Path], setups.Contender]] = {
        "ccq": lambda d: setups.start_ccq(venv, ups, d, registry),
        "recipe": lambda d: setups.start_recipe(venv, ups, d, registry),
    }
    if cli is not None:
        starters["ccr"] = lambda d: setups.start_ccr(cli, ups, d, registry)
    times: dict[str, list[float]] = {n: [] for n in starters}
    errors: dict[str, str] = {}
    final: dict[str, setups.Contender] = {}
    for rep in range(plan.startup_reps):
        for name, start in starters.items():
            if name in errors:
                continue
            try:
                c = start(run_dir / f"{name}-{rep}")
            except Exception as exc:  # noqa: BLE001 - one broken peer must not end the run
                errors[name] = str(exc)[:2000]
                log(f"{name} did not start: {str(exc)[:300]}")
                continue
            times[name].append(c.start_seconds[-1])
            log(f"{name} healthy after {c.start_seconds[-1]:.2f}s (start {rep + 1}/{plan.startup_reps})")
            if rep < plan.startup_reps - 1:
                registry.stop(c.proc)
            else:
                final[name] = c
    time.sleep(3)  # let start-up work settle before "idle"
    idle_rate = {n: procs.idle_cpu_rate(c.pid) for n, c in final.items() if c.pid}
    section = {n: {"start_seconds": times[n], "start_median": median(times[n]),
                   "idle_rss_mb": procs.rss_mb(c.pid) if c.pid else None,
                   "idle_cpu_per_s": idle_rate.get(n)} for n, c in final.items()}
    for n, err in errors.items():
        section[n] = {"error": err}
    return [setups.Contender("direct"), *final.values()], section


def warm_up(contenders: list[setups.Contender], reqs: Requests, ups: setups.Upstreams) -> dict[str, Any]:
    """First requests (imports, pools); then learn the upstream body for ``direct``."""
    ccq = next((c for c in contenders if c.name == "ccq"), None)
    if ccq is not None:
        body = reqs.anthropic(ccq, "full_stream")
        body["model"] = setups.alias_for("capture")
        client.stream("127.0.0.1", ccq.port, "/v1/messages", body, ccq.headers, timeout=60)
        captured = ups.captured_bodies()
        if captured:
            reqs.direct_full = captured[-1]
    if reqs.direct_full is None:
        raise RuntimeError("could not capture the upstream body of the full-size request")
    statuses: dict[str, list[int]] = {}
    for c in contenders:
        for kind in ("small", "small", "full", "full_stream", "warm_stream"):
            r = reqs.route(c, kind)
            res = client.stream("127.0.0.1", r.port, r.path, r.payload, r.headers, timeout=60)
            statuses.setdefault(c.name, []).append(res.status)
    return {"statuses": statuses, "direct_full_bytes": len(json.dumps(reqs.direct_full)),
            "anthropic_full_bytes": len(FULL_REQUEST.read_bytes())}


def overhead(plan: Plan, contenders: list[setups.Contender], reqs: Requests) -> dict[str, Any]:
    """Small and full-size requests, interleaved: latency as the caller sees it."""
    out: dict[str, Any] = {}
    conns = {c.name: None for c in contenders}
    samples: dict[str, list[float]] = {c.name: [] for c in contenders}
    errors = {c.name: 0 for c in contenders}
    routes = {c.name: reqs.route(c, "small") for c in contenders}
    deadline = Deadline(plan.small_budget)
    try:
        conns = {c.name: client.KeepAlive("127.0.0.1", routes[c.name].port) for c in contenders}
        for i in range(plan.small_requests):
            if deadline.passed() and i >= 30:
                break
            for c in rotated(contenders, i):
                r = routes[c.name]
                ex = conns[c.name].post(r.path, r.payload, r.headers)
                samples[c.name].append(ex.seconds)
                errors[c.name] += ex.status != 200
    finally:
        for conn in conns.values():
            if conn is not None:
                conn.close()
    out["small"] = {n: {**summary(s, 1e3), "errors": errors[n]} for n, s in samples.items()}
    log(f"small requests: {len(samples['direct'])} rounds")

    full_ns = {c.name: [] for c in contenders}
    ttfb = {c.name: [] for c in contenders}
    total = {c.name: [] for c in contenders}
    ferr = {c.name: 0 for c in contenders}
    routes_ns = {c.name: reqs.route(c, "full") for c in contenders}
    routes_s = {c.name: reqs.route(c, "full_stream") for c in contenders}
    conns = {c.name: client.KeepAlive("127.0.0.1", routes_ns[c.name].port) for c in contenders}
    deadline = Deadline(plan.full_budget)
    try:
        for i in range(plan.full_requests):
            if deadline.passed() and i >= 5:
                break
            for c in rotated(contenders, i):
                r = routes_ns[c.name]
                ex = conns[c.name].post(r.path, r.payload, r.headers)
                full_ns[c.name].append(ex.seconds)
                ferr[c.name] += ex.status != 200
                r = routes_s[c.name]
                res = client.stream("127.0.0.1", r.port, r.path, r.payload, r.headers, timeout=60)
                ttfb[c.name].append(res.ttfb)
                total[c.name].append(res.total)
                ferr[c.name] += res.status != 200 or bool(res.error)
    finally:
        for conn in conns.values():
            conn.close()
    out["full"] = {n: summary(s, 1e3) for n, s in full_ns.items()}
    out["full_stream_ttfb"] = {n: summary(s, 1e3) for n, s in ttfb.items()}
    out["full_stream_total"] = {n: summary(s, 1e3) for n, s in total.items()}
    out["full_errors"] = ferr
    log(f"full-size requests: {len(full_ns['direct'])} rounds")
    return out


def _log_size(c: setups.Contender) -> int:
    try:
        return c.log.stat().st_size if c.log else 0
    except OSError:
        return 0


def relay(plan: Plan, contenders: list[setups.Contender], reqs: Requests, idle: dict[str, Any],
          kind: str, rounds: int, budget: float) -> dict[str, Any]:
    """One-token-per-chunk streams: rate, gaps, coalescing, proxy CPU and log growth."""
    per: dict[str, list[dict[str, Any]]] = {c.name: [] for c in contenders}
    gaps: dict[str, list[float]] = {c.name: [] for c in contenders}
    deadline = Deadline(budget)
    expected = setups.STREAM_TOKENS[kind]
    last_round = 0.0
    for i in range(rounds):
        # Another round only if one as long as the last still fits the budget.
        if i and deadline.left() < last_round:
            break
        round_start = time.monotonic()
        for c in rotated(contenders, i):
            if run_over():
                log(f"{kind}: stopped, the run's time budget is spent")
                break
            r = reqs.route(c, kind)
            idle_rate = (idle.get(c.name) or {}).get("idle_cpu_per_s") or 0.0
            cpu0 = procs.cpu_seconds(c.pid) if c.pid else 0.0
            log0 = _log_size(c)
            t0 = time.monotonic()
            res = client.stream("127.0.0.1", r.port, r.path, r.payload, r.headers,
                                timeout=stream_timeout(plan))
            time.sleep(0.3)  # end-of-stream callbacks (logging, usage) are part of the cost
            elapsed = time.monotonic() - t0
            row = {"status": res.status, "error": res.error, "tokens": len(res.token_times),
                   "expected": expected, "tokens_per_s": res.tokens_per_second(),
                   "total_s": res.total, "ttfb_ms": res.ttfb * 1e3,
                   "coalesced": res.coalesced_fraction(),
                   "reads_with_tokens": len(res.tokens_per_read)}
            g = res.gaps()
            row.update({f"gap_{k}_us": v for k, v in summary(g, 1e6).items() if k in ("p50", "p99", "max")})
            if c.pid:
                row["cpu_s"] = max(0.0, procs.cpu_seconds(c.pid) - cpu0 - idle_rate * elapsed)
                row["log_bytes"] = _log_size(c) - log0
            per[c.name].append(row)
            gaps[c.name].extend(g)
            log(f"{kind} round {i + 1}: {c.name:6s} {row['tokens']}/{expected} tokens "
                f"{row['tokens_per_s']:9.0f}/s p99 gap {row['gap_p99_us']:8.0f}us"
                + (f" cpu {row['cpu_s']:.2f}s" if 'cpu_s' in row else ""))
        last_round = time.monotonic() - round_start
    out: dict[str, Any] = {}
    for name, rows in per.items():
        pooled = summary(gaps[name], 1e6)
        out[name] = {
            "rounds": len(rows),
            "tokens_per_s": median(r["tokens_per_s"] for r in rows),
            "tokens_received": median(r["tokens"] for r in rows),
            "expected": expected,
            "gap_p50_us": pooled["p50"], "gap_p99_us": pooled["p99"], "gap_max_us": pooled["max"],
            "coalesced": median(r["coalesced"] for r in rows),
            "total_s": median(r["total_s"] for r in rows),
            "cpu_s": median(r.get("cpu_s", float("nan")) for r in rows),
            "log_bytes": median(r.get("log_bytes", float("nan")) for r in rows),
            "errors": sum(1 for r in rows if r["status"] != 200 or r["error"]),
            "runs": rows,
        }
    out["_gaps_us"] = {n: [round(x * 1e6, 1) for x in g] for n, g in gaps.items()}
    return out


def concurrency(plan: Plan, contenders: list[setups.Contender], reqs: Requests) -> dict[str, Any]:
    """1, 4, 16 concurrent full-size streams: throughput, tail latency, proxy RSS."""
    out: dict[str, Any] = {}
    for li, level in enumerate(plan.conc_levels):
        total = max(8, 2 * level)
        if li and run_over():
            log(f"concurrency {level}: skipped, the run's time budget is spent")
            break
        for c in rotated(contenders, li):
            if run_over():
                log(f"concurrency {level}: {c.name} skipped, the run's time budget is spent")
                continue
            out.setdefault(c.name, {})[str(level)] = _one_level(plan, c, reqs, level, total)
            row = out[c.name][str(level)]
            log(f"concurrency {level:2d}: {c.name:6s} {row['requests']} streams "
                f"{row['tokens_per_s']:8.0f} tok/s p99 {row['latency_ms']['p99']:8.0f}ms"
                + (f" rss {row['peak_rss_mb']:.0f}MB" if row.get('peak_rss_mb') else ""))
    return out


def _one_level(plan: Plan, c: setups.Contender, reqs: Requests, level: int, total: int) -> dict[str, Any]:
    route = reqs.route(c, "conc")
    lock = threading.Lock()
    issued = 0
    results: list[client.StreamResult] = []
    deadline = Deadline(plan.conc_budget)
    stop = threading.Event()
    peak = [procs.rss_mb(c.pid) if c.pid else 0.0]

    def sample_rss() -> None:
        while not stop.wait(0.1):
            peak[0] = max(peak[0], procs.rss_mb(c.pid))  # type: ignore[arg-type]

    def worker() -> None:
        nonlocal issued
        while True:
            with lock:
                if issued >= total or (issued >= level and deadline.passed()):
                    return
                issued += 1
            res = client.stream("127.0.0.1", route.port, route.path, route.payload, route.headers,
                                timeout=stream_timeout(plan))
            with lock:
                results.append(res)

    sampler = threading.Thread(target=sample_rss, daemon=True) if c.pid else None
    if sampler:
        sampler.start()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(level)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=plan.conc_budget + plan.stream_timeout + 10)
    wall = time.perf_counter() - t0
    stop.set()
    if sampler:
        sampler.join(timeout=2)
    tokens = sum(len(r.token_times) for r in results)
    return {
        "requests": len(results),
        "wall_s": wall,
        "tokens_per_s": tokens / wall if wall > 0 else float("nan"),
        "requests_per_s": len(results) / wall if wall > 0 else float("nan"),
        "latency_ms": summary([r.total for r in results], 1e3),
        "ttfb_ms": summary([r.ttfb for r in results if r.ttfb == r.ttfb], 1e3),
        "errors": sum(1 for r in results if r.status != 200 or r.error),
        "peak_rss_mb": peak[0] if c.pid else None,
    }


def callback_cost(plan: Plan, venv: Path) -> dict[str, Any]:
    """bench/bench_callback.py's logic (and the blog recipe's hook) inside the LiteLLM venv."""
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([str(venv / "bin/python"), str(REPO / "bench/callback_cost.py"),
                           "--repeat", str(plan.callback_repeat)],
                          capture_output=True, text=True, timeout=240, check=False, env=env, cwd=REPO)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": (proc.stderr or proc.stdout)[-1500:]}


# --------------------------------------------------------------------------
# Machine and versions
# --------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory_gib": mem_gib,
            "kernel": platform.release(), "os": _os_name(), "python": platform.python_version(),
            "loadavg_start": _loadavg()}


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def _loadavg() -> list[str]:
    try:
        return Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        return []


def versions(venv: Path, pins: installs.Pins, cli: Path | None) -> dict[str, Any]:
    v: dict[str, Any] = setups.venv_versions(venv)
    try:
        v["claude_code_fixture"] = json.loads(FIXTURE_INDEX.read_text())["claude_code"]
    except (OSError, ValueError, KeyError):
        v["claude_code_fixture"] = "unknown"
    v["claude_code_pin"] = pins.claude_code_version
    if cli is not None:
        try:
            v["ccr"] = json.loads((cli.parent.parent / "package.json").read_text())["version"]
        except (OSError, ValueError, KeyError):
            v["ccr"] = setups.CCR_VERSION
    v["node"] = setups.node_version()
    return v


def prune_runs(tmp: Path, keep: int) -> None:
    """Keep the newest ``keep`` run directories: each holds proxy logs of 100+ MB."""
    runs = sorted(p for p in tmp.glob("run-*") if p.is_dir())
    for old in runs[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where RESULTS.md and the plots go")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the whole run (default 720; sections shrink to fit)")
    args = parser.parse_args()
    plan = QUICK if args.quick else Plan()
    if args.budget:
        plan = replace(plan, total_budget=args.budget)
    procs.install_signal_handlers()
    registry = procs.Registry()
    started = time.monotonic()
    start_clock(plan, started)
    stamp = datetime.now(timezone.utc)
    run_dir = RESULTS / "tmp" / f"run-{stamp.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"date": stamp.strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
                           "plan": plan.__dict__ | {"conc_levels": list(plan.conc_levels)},
                           "quick": args.quick, "errors": {}}

    def section(name: str, fn: Callable[[], Any]) -> Any:
        if name not in ("callback", "login", "provisioning_molecule") and run_over():
            res["errors"][name] = "skipped: the run's time budget was spent"
            res[name] = None
            log(f"--- {name}: skipped, the run's time budget is spent")
            return None
        log(f"--- {name}")
        try:
            res[name] = fn()
        except (KeyboardInterrupt, procs.Interrupted):
            raise
        except Exception as exc:  # noqa: BLE001 - the other sections still run
            res["errors"][name] = f"{type(exc).__name__}: {exc}"
            log(f"{name} failed: {exc}\n{traceback.format_exc()[-2000:]}")
            res[name] = None
        return res[name]

    try:
        pins = installs.read_pins()
        log("preparing the pinned LiteLLM venv (cached under .cache/)")
        venv = installs.ensure_litellm_venv(pins)
        log(f"preparing claude-code-router {setups.CCR_VERSION} (cached under .cache/)")
        try:
            cli: Path | None = setups.ensure_ccr()
        except Exception as exc:  # noqa: BLE001 - measure the rest without the peer
            cli = None
            res["errors"]["ccr_install"] = str(exc)[-1500:]
        res["versions"] = versions(venv, pins, cli)

        ups = setups.Upstreams(run_dir / "upstream", registry).start()
        contenders, res["startup"] = start_proxies(plan, venv, cli, ups, run_dir, registry)
        reqs = Requests(ups)
        section("warm_up", lambda: warm_up(contenders, reqs, ups))
        if reqs.direct_full is not None:
            section("overhead", lambda: overhead(plan, contenders, reqs))
            section("relay_unpaced", lambda: relay(plan, contenders, reqs, res["startup"], "stream",
                                                   plan.relay_rounds, plan.relay_budget))
            section("relay_paced", lambda: relay(plan, contenders, reqs, res["startup"], "paced",
                                                 plan.paced_rounds, plan.paced_budget))
            section("concurrency", lambda: concurrency(plan, contenders, reqs))
        for c in contenders:
            if c.pid and c.name in res["startup"]:
                res["startup"][c.name]["final_rss_mb"] = procs.rss_mb(c.pid)
        log("stopping the proxies and fakes")
        registry.stop_all()
        section("callback", lambda: callback_cost(plan, venv))
        section("login", lambda: login.first_call_after_login(venv, installs.ensure_claude_code(pins),
                                                               plan.login_reps))
        # Last, with the proxies stopped: Molecule's default scenario alone on a target of its own.
        section("provisioning_molecule", provisioning.measure_with_molecule)
    except (KeyboardInterrupt, procs.Interrupted) as exc:
        log(f"interrupted ({exc or 'Ctrl-C'}): stopping every process the benchmark started")
        registry.stop_all()
        return 130
    except Exception as exc:  # noqa: BLE001 - still write what was measured
        res["errors"]["fatal"] = f"{type(exc).__name__}: {exc}"
        log(f"stopped early: {exc}\n{traceback.format_exc()[-2000:]}")
    finally:
        registry.stop_all()
    res["machine"]["loadavg_end"] = _loadavg()
    res["wall_seconds"] = round(time.monotonic() - started, 1)
    (run_dir / "results.json").write_text(json.dumps(res, indent=1, default=str))
    (RESULTS / "tmp" / "latest.json").write_text(json.dumps(res, indent=1, default=str))
    prune_runs(RESULTS / "tmp", keep=3)
    markdown = report.write(res, args.out)
    print(markdown)
    log(f"done in {res['wall_seconds']:.0f}s; raw data in {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
