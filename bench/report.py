"""RESULTS.md and the PNG plots from one run's results (see run.py for the shape).

    .venv/bin/python bench/report.py [bench/results/tmp/latest.json]

re-renders the report from saved raw results without measuring again.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.stats import NAN, ratio  # noqa: E402

# The contenders of bench/setups.py; "recipe" is the setup of the blog recipe ccq started from
# (docs/provisioning.md).
ORDER = ("direct", "ccq", "recipe", "ccr")
PROXIES = ("ccq", "recipe", "ccr")
COLORS = {"direct": "#7f7f7f", "ccq": "#1f77b4", "recipe": "#d62728", "ccr": "#2ca02c"}
LABELS = {"direct": "direct", "ccq": "ccq", "recipe": "blog recipe setup", "ccr": "claude-code-router"}


def get(d: Any, *keys: Any, default: Any = NAN) -> Any:
    """d[k1][k2]... or ``default`` when any step is missing."""
    for k in keys:
        if not isinstance(d, dict) or k not in d or d[k] is None:
            return default
        d = d[k]
    return d


def fmt(v: Any, digits: int = 1) -> str:
    """A number for a table: thousands separators, '–' for missing."""
    if v is None or (isinstance(v, float) and (math.isnan(v) or math.isinf(v))):
        return "–"
    if isinstance(v, (int, float)):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    return str(v)


def fmt_ratio(v: float) -> str:
    if v != v:
        return "–"
    return f"{v:.2f}×" if v < 10 else f"{v:.0f}×"


# --------------------------------------------------------------------------
# The headline
# --------------------------------------------------------------------------

def _added(res: dict[str, Any], section: str, key: str, name: str, stat: str) -> float:
    """A proxy's value minus direct's, same section, same statistic."""
    return get(res, section, key, name, stat) - get(res, section, key, "direct", stat)


def headline_rows(res: dict[str, Any]) -> list[tuple[str, dict[str, float], str, str]]:
    """(measure, value per contender, target text, ccq's status against it)."""
    rows: list[tuple[str, dict[str, float], str, str]] = []

    def add(label: str, value: Callable[[str], float], target: str = "",
            status: Callable[[dict[str, float]], str] | None = None,
            names: tuple[str, ...] = ORDER) -> None:
        vals = {n: value(n) for n in names}
        rows.append((label, vals, target, status(vals) if status else ""))

    def at_most_peers(vals: dict[str, float]) -> str:
        ccq = vals.get("ccq", NAN)
        peers = [vals.get(p, NAN) for p in ("recipe", "ccr")]
        if ccq != ccq or all(p != p for p in peers):
            return "n/a"
        return "met" if all(ccq <= p for p in peers if p == p) else "not met"

    def at_most(limit: float) -> Callable[[dict[str, float]], str]:
        return lambda vals: "n/a" if vals.get("ccq", NAN) != vals.get("ccq", NAN) else (
            "met" if vals["ccq"] <= limit else "not met")

    def at_least(limit: float) -> Callable[[dict[str, float]], str]:
        return lambda vals: "n/a" if vals.get("ccq", NAN) != vals.get("ccq", NAN) else (
            "met" if vals["ccq"] >= limit else "not met")

    o = "overhead"
    add("small request, p50 (ms)", lambda n: get(res, o, "small", n, "p50"))
    add("small request, p95 (ms)", lambda n: get(res, o, "small", n, "p95"))
    add("small request, p99 (ms)", lambda n: get(res, o, "small", n, "p99"))
    add("added over direct, small p50 (ms)", lambda n: _added(res, o, "small", n, "p50"),
        "ccq ≤ recipe and ≤ ccr (issue 7)", at_most_peers, PROXIES)
    add("added over direct, small p95 (ms)", lambda n: _added(res, o, "small", n, "p95"),
        "ccq ≤ recipe and ≤ ccr (issue 7)", at_most_peers, PROXIES)
    add("full-size request (78 KB), non-streaming p50 (ms)", lambda n: get(res, o, "full", n, "p50"),
        "ccq ≤ recipe and ≤ ccr (issue 7)", at_most_peers)
    add("full-size streaming: time to first byte p50 (ms)",
        lambda n: get(res, o, "full_stream_ttfb", n, "p50"), "ccq ≤ recipe (issue 8; recipe ≈ 12 ms)",
        lambda v: "n/a" if v.get("ccq", NAN) != v.get("ccq", NAN) else (
            "met" if v["ccq"] <= v.get("recipe", NAN) else "not met"))
    add("full-size streaming: total p50 (ms)", lambda n: get(res, o, "full_stream_total", n, "p50"))
    u, p = "relay_unpaced", "relay_paced"
    add("relay, upstream unpaced: tokens/s received", lambda n: get(res, u, n, "tokens_per_s"),
        "≥ 20,000 (issues 7, 8); stretch: ccr's", at_least(20000))
    add("relay at 2,000 tok/s: added gap p50 (µs)",
        lambda n: get(res, p, n, "gap_p50_us") - get(res, p, "direct", "gap_p50_us"), "", None, PROXIES)
    add("relay at 2,000 tok/s: added gap p99 (µs)",
        lambda n: get(res, p, n, "gap_p99_us") - get(res, p, "direct", "gap_p99_us"),
        "< 5,000 µs (issues 7, 8)", at_most(5000), PROXIES)
    add("relay at 2,000 tok/s: tokens sharing a read (%)", lambda n: 100 * get(res, p, n, "coalesced"),
        "direct's share = upstream bursts")
    add("CPU seconds per 4,000-chunk stream", lambda n: get(res, u, n, "cpu_s"),
        "ccq ≤ recipe / 10 (issue 8)",
        lambda v: "n/a" if v.get("ccq", NAN) != v.get("ccq", NAN) or v.get("recipe", NAN) != v.get("recipe", NAN)
        else ("met" if v["ccq"] <= v["recipe"] / 10 else "not met"), PROXIES)
    add("proxy log bytes per 4,000-chunk stream", lambda n: get(res, u, n, "log_bytes"),
        "small (issue 8)", None, PROXIES)
    top = str(max(get(res, "plan", "conc_levels", default=[16]) or [16]))
    add(f"{top} concurrent full-size streams: tokens/s", lambda n: get(res, "concurrency", n, top, "tokens_per_s"))
    add(f"{top} concurrent full-size streams: latency p99 (ms)",
        lambda n: get(res, "concurrency", n, top, "latency_ms", "p99"))
    add(f"{top} concurrent full-size streams: peak proxy RSS (MB)",
        lambda n: get(res, "concurrency", n, top, "peak_rss_mb"), "", None, PROXIES)
    add("start-up until healthy, median (s)", lambda n: get(res, "startup", n, "start_median"),
        "≤ 3 s (issues 7, 8)", at_most(3.0), PROXIES)
    add("idle RSS after start (MB)", lambda n: get(res, "startup", n, "idle_rss_mb"),
        "reported (recipe ≈ 212 MB, issue 8)", None, PROXIES)
    cb = res.get("callback") or {}
    add("callback per call, full-size request (µs; bench_callback)",
        lambda n: get(cb, "bench_callback", "pre_call_hook_us_median") if n == "ccq" else NAN,
        "< 300 µs (issue 7)", at_most(300), ("ccq",))
    add("callback per call, a fresh copy of the request each call (µs)",
        lambda n: get(cb, f"{n}_fresh_copies", "us_median"), "", None, ("ccq", "recipe"))
    return rows


def _cell(v: Any, label: str) -> str:
    digits = 0 if ("tokens/s" in label or "bytes" in label or "MB" in label or "µs" in label) else 2
    if "(%)" in label:
        digits = 1
    return fmt(v, digits)


def headline_table(res: dict[str, Any]) -> str:
    head = ["| measure | direct | ccq | recipe | ccr | ccq/direct | ccq/recipe | ccq/ccr | target | ccq |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for label, vals, target, status in headline_rows(res):
        cells = [_cell(vals.get(n, None), label) if n in vals else "" for n in ORDER]
        ccq = vals.get("ccq")
        rat = []
        for other in ("direct", "recipe", "ccr"):
            a, b = (ccq, vals.get(other))
            if "added" in label:
                rat.append("")
            else:
                rat.append(fmt_ratio(ratio(a, b)))
        head.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(rat)
                    + f" | {target} | {status} |")
    return "\n".join(head)


# --------------------------------------------------------------------------
# Details
# --------------------------------------------------------------------------

def overhead_table(res: dict[str, Any]) -> str:
    o = res.get("overhead") or {}
    lines = ["| request | path | n | p50 ms | p95 ms | p99 ms | mean ms | proxy/direct p50 | errors |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key, label in (("small", "small, non-streaming"), ("full", "full-size, non-streaming"),
                       ("full_stream_ttfb", "full-size, streaming: first byte"),
                       ("full_stream_total", "full-size, streaming: total")):
        for n in ORDER:
            s = get(o, key, n, default=None)
            if s is None:
                continue
            errs = get(o, "small", n, "errors", default="") if key == "small" else get(
                o, "full_errors", n, default="")
            lines.append(f"| {label} | {n} | {s['n']} | {fmt(s['p50'], 2)} | {fmt(s['p95'], 2)} | "
                         f"{fmt(s['p99'], 2)} | {fmt(s['mean'], 2)} | "
                         f"{fmt_ratio(ratio(s['p50'], get(o, key, 'direct', 'p50')))} | {errs} |")
    return "\n".join(lines)


def relay_table(res: dict[str, Any]) -> str:
    lines = ["| upstream | path | rounds | tokens received | tokens/s | gap p50 µs | gap p99 µs | "
             "gap max µs | tokens sharing a read | CPU s / stream | log bytes / stream | errors |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, label in (("relay_unpaced", "unpaced, 4,000 chunks"), ("relay_paced", "2,000 tok/s, 2,000 chunks")):
        for n in ORDER:
            r = get(res, key, n, default=None)
            if r is None:
                continue
            lines.append(
                f"| {label} | {n} | {r['rounds']} | {fmt(r['tokens_received'], 0)}/{r['expected']} | "
                f"{fmt(r['tokens_per_s'], 0)} | {fmt(r['gap_p50_us'], 0)} | {fmt(r['gap_p99_us'], 0)} | "
                f"{fmt(r['gap_max_us'], 0)} | {fmt(100 * r['coalesced'], 1)}% | {fmt(r['cpu_s'], 2)} | "
                f"{fmt(r['log_bytes'], 0)} | {r['errors']} |")
    return "\n".join(lines)


def concurrency_table(res: dict[str, Any]) -> str:
    c = res.get("concurrency") or {}
    lines = ["| streams | path | requests | tokens/s | requests/s | latency p50 ms | p95 ms | p99 ms | "
             "first byte p95 ms | peak RSS MB | errors |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for level in get(res, "plan", "conc_levels", default=[]) or []:
        for n in ORDER:
            r = get(c, n, str(level), default=None)
            if r is None:
                continue
            lines.append(f"| {level} | {n} | {r['requests']} | {fmt(r['tokens_per_s'], 0)} | "
                         f"{fmt(r['requests_per_s'], 2)} | {fmt(r['latency_ms']['p50'], 1)} | "
                         f"{fmt(r['latency_ms']['p95'], 1)} | {fmt(r['latency_ms']['p99'], 1)} | "
                         f"{fmt(r['ttfb_ms']['p95'], 1)} | {fmt(r['peak_rss_mb'], 0)} | {r['errors']} |")
    return "\n".join(lines)


def startup_table(res: dict[str, Any]) -> str:
    lines = ["| path | starts until healthy (s) | median s | idle RSS MB | idle CPU s/s | RSS at the end MB |",
             "|---|---|---:|---:|---:|---:|"]
    for n in PROXIES:
        s = get(res, "startup", n, default=None)
        if s is None:
            continue
        if "error" in s:
            lines.append(f"| {n} | did not start: {s['error'][:200]} | | | | |")
            continue
        starts = ", ".join(fmt(x, 2) for x in s["start_seconds"])
        lines.append(f"| {n} | {starts} | {fmt(s['start_median'], 2)} | "
                     f"{fmt(s['idle_rss_mb'], 0)} | {fmt(s['idle_cpu_per_s'], 3)} | "
                     f"{fmt(s.get('final_rss_mb'), 0)} |")
    return "\n".join(lines)


def login_table(res: dict[str, Any]) -> str:
    """bench/login.py: ccq's first call after a login, on a host without a service manager."""
    figures = res.get("login")
    if not figures:
        return "(not measured in this run)"
    rows = [("warm: the proxy already runs", "warm"),
            *((f"first, typed {delay:g} s after the shell opened", f"after_{delay:g}s")
              for delay in figures.get("typing_delays", [])),
            ("first, typed at once (`bash -i -c 'ccq -p ...'`)", "at_once"),
            ("first, without the shell's start (ccq starts it; before issue 25)", "without_shell_start"),
            ("shell opened until the proxy answers", "shell_to_healthy")]
    warm = get(res, "login", "warm", "median", default=None)
    lines = ["| `ccq -p` after a login, no systemd | runs (s) | median s | over warm s |", "|---|---|---:|---:|"]
    for label, key in rows:
        figure = figures.get(key) or {}
        over = "" if key in ("warm", "shell_to_healthy") or warm is None or figure.get("median") is None \
            else fmt(figure["median"] - warm, 2)
        lines.append(f"| {label} | {', '.join(fmt(s, 2) for s in figure.get('seconds', []))} | "
                     f"{fmt(figure.get('median'), 2)} | {over} |")
    return "\n".join(lines)


def callback_table(res: dict[str, Any]) -> str:
    cb = res.get("callback") or {}
    if "error" in cb or not cb:
        return f"not measured: {cb.get('error', 'no data')[:500]}"
    b = cb.get("bench_callback", {})
    return "\n".join([
        f"Request: {fmt(b.get('request_bytes'), 0)} bytes, {b.get('tools')} tools "
        f"(bench/bench_callback.py's full-size request), inside the LiteLLM venv "
        f"(LiteLLM imported: {cb.get('litellm_loaded')}).", "",
        "| hook | median µs/call | min µs/call |", "|---|---:|---:|",
        f"| ccq normalize_request (bench_callback) | {fmt(b.get('normalize_request_us_median'))} | "
        f"{fmt(b.get('normalize_request_us_min'))} |",
        f"| ccq async_pre_call_hook (bench_callback, same request object) | "
        f"{fmt(b.get('pre_call_hook_us_median'))} | {fmt(b.get('pre_call_hook_us_min'))} |",
        f"| ccq async_pre_call_hook, a fresh copy per call | {fmt(get(cb, 'ccq_fresh_copies', 'us_median'))} | "
        f"{fmt(get(cb, 'ccq_fresh_copies', 'us_min'))} |",
        f"| recipe async_pre_call_hook, a fresh copy per call | {fmt(get(cb, 'recipe_fresh_copies', 'us_median'))} | "
        f"{fmt(get(cb, 'recipe_fresh_copies', 'us_min'))} |",
    ])


def _tasks(entry: dict[str, Any], n: int = 5) -> str:
    tasks = entry.get("top_tasks") or []
    return "; ".join(f"{name} {secs:.1f}s" for name, secs in tasks[:n]) or "–"


def provisioning_table(res: dict[str, Any]) -> str:
    # From Molecule on a test target: the benchmark never re-runs the play on this machine (issue 25).
    mol = res.get("provisioning_molecule") or {}
    lines = ["| run | wall s | changed | status | slowest tasks (profile_tasks) | target |",
             "|---|---:|---:|---|---|---|"]
    notes = []
    noop = get(mol, "noop_rerun", default={}) or {}
    if noop.get("changed"):
        notes.append(f"Molecule idempotence changed: {', '.join(noop.get('changed_tasks') or [])} "
                     f"(log {noop.get('log')}).")
    if mol.get("quiet_run"):
        notes.append(f"Molecule alone on a target of its own: {mol['quiet_run']}; "
                     "read from make molecule's log instead.")
    if "not_measured" in mol:
        lines.append(f"| Molecule (test target) | – | – | not measured: {mol['not_measured']} | | |")
    else:
        for key, label in (("first_converge", "first converge, fresh test target (Molecule)"),
                           ("noop_rerun", "no-op re-run, test target (Molecule idempotence)")):
            e = mol.get(key) or {}
            if "not_measured" in e or not e:
                lines.append(f"| {label} | – | – | not measured: {e.get('not_measured', 'no data')} | | |")
                continue
            started = " ".join(e.get("first_timestamp", "").split()[1:]) or "at an unknown time"
            lines.append(f"| {label} | {fmt(e.get('total_seconds'))} | {e.get('changed')} | {e.get('status')}, "
                         f"started {started} | {_tasks(e)} | "
                         f"{'changed=0, ≤ 15 s (issues 7, 25)' if key == 'noop_rerun' else ''} |")
    for key in ("first_converge", "noop_rerun"):
        log = get(mol, key, "log", default=None)
        if log:
            notes.append(f"Molecule {key.replace('_', ' ')} read from {log}.")
    return "\n".join(lines + ([""] + notes if notes else []))


# --------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------

def plots(res: dict[str, Any], out: Path) -> list[str]:
    """Write the PNGs; returns their file names (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    for name, fn in (("overhead.png", _plot_overhead), ("relay.png", _plot_relay),
                     ("gaps.png", _plot_gaps), ("concurrency.png", _plot_concurrency)):
        try:
            fig = fn(res, plt)
        except Exception as exc:  # noqa: BLE001 - a missing section leaves its plot out
            print(f"plot {name} skipped: {exc}", file=sys.stderr)
            continue
        if fig is None:
            continue
        fig.savefig(out / name, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(name)
    return written


def _bars(ax: Any, groups: list[str], series: dict[str, list[float]], ylabel: str) -> None:
    names = [n for n in ORDER if n in series]
    width = 0.8 / max(1, len(names))
    for i, n in enumerate(names):
        xs = [g + (i - (len(names) - 1) / 2) * width for g in range(len(groups))]
        vals = [v if v == v else 0 for v in series[n]]
        ax.bar(xs, vals, width, label=LABELS[n], color=COLORS[n])
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)


def _plot_overhead(res: dict[str, Any], plt: Any) -> Any:
    o = res.get("overhead")
    if not o:
        return None
    names = [n for n in ORDER if n in o["small"]]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.2))
    _bars(a1, ["p50", "p95", "p99"], {n: [o["small"][n][k] for k in ("p50", "p95", "p99")] for n in names},
          "ms")
    a1.set_title("Small non-streaming request")
    a1.legend()
    _bars(a2, ["non-streaming", "streaming: first byte", "streaming: total"],
          {n: [get(o, "full", n, "p50"), get(o, "full_stream_ttfb", n, "p50"), get(o, "full_stream_total", n, "p50")]
           for n in names}, "ms (p50)")
    a2.set_title("Full-size Claude Code request (78 KB)")
    fig.suptitle(f"Request overhead on 127.0.0.1 — {res.get('date', '')}")
    return fig


def _plot_relay(res: dict[str, Any], plt: Any) -> Any:
    u, p = res.get("relay_unpaced"), res.get("relay_paced")
    if not u:
        return None
    names = [n for n in ORDER if n in u]
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 4.2))
    a1.bar([LABELS[n] for n in names], [u[n]["tokens_per_s"] for n in names], color=[COLORS[n] for n in names])
    a1.set_yscale("log")
    a1.axhline(20000, color="k", ls="--", lw=1)
    a1.text(len(names) - 0.5, 20000 * 1.1, "target 20,000", fontsize=8, ha="right")
    a1.axhline(2000, color="orange", ls=":", lw=1)
    a1.text(len(names) - 0.5, 2000 * 1.1, "Cerebras ≈ 2,000", fontsize=8, ha="right")
    a1.set_title("Unpaced 4,000-chunk stream: tokens/s received")
    a1.tick_params(axis="x", labelrotation=15)
    proxies = [n for n in PROXIES if n in u]
    a2.bar([LABELS[n] for n in proxies], [u[n]["cpu_s"] for n in proxies], color=[COLORS[n] for n in proxies])
    a2.set_title("Proxy CPU seconds per 4,000-chunk stream")
    a2.tick_params(axis="x", labelrotation=15)
    if p:
        _bars(a3, ["gap p50", "gap p99"],
              {n: [p[n]["gap_p50_us"] - p["direct"]["gap_p50_us"], p[n]["gap_p99_us"] - p["direct"]["gap_p99_us"]]
               for n in proxies if n in p}, "µs added over direct")
        a3.set_yscale("symlog", linthresh=10)
        added = [p[n][k] - p["direct"][k] for n in proxies if n in p for k in ("gap_p50_us", "gap_p99_us")]
        finite = [x for x in added if x == x] or [1.0]
        a3.set_ylim(min(-100.0, min(finite) * 3), max(20000.0, max(finite) * 3))
        a3.axhline(5000, color="k", ls="--", lw=1)
        a3.set_title("Paced 2,000 tok/s: inter-chunk gap added")
        a3.legend(fontsize=8)
    return fig


def _plot_gaps(res: dict[str, Any], plt: Any) -> Any:
    gaps = get(res, "relay_paced", "_gaps_us", default=None)
    if not gaps:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for n in ORDER:
        # Events that arrived in the same read have a 0 µs gap: drawn at 1 µs.
        xs = sorted(max(1.0, x) for x in gaps.get(n, []))
        if not xs:
            continue
        ax.plot(xs, [i / len(xs) for i in range(1, len(xs) + 1)], label=LABELS[n], color=COLORS[n])
    ax.set_xscale("log")
    ax.axvline(500, color="orange", ls=":", lw=1)
    ax.set_xlabel("gap between token events as received (µs; 1 = same read); upstream sends one every 500 µs")
    ax.set_ylabel("fraction of gaps ≤ x")
    ax.set_title("Inter-chunk gaps, upstream paced at 2,000 tokens/s (same run)")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def _plot_concurrency(res: dict[str, Any], plt: Any) -> Any:
    c = res.get("concurrency")
    levels = get(res, "plan", "conc_levels", default=[]) or []
    if not c or not levels:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for n in ORDER:
        if n not in c:
            continue
        rows = [c[n].get(str(lv)) for lv in levels]
        xs = [lv for lv, r in zip(levels, rows, strict=True) if r]
        rows = [r for r in rows if r]
        kw = {"label": LABELS[n], "color": COLORS[n], "marker": "o"}
        axes[0].plot(xs, [r["tokens_per_s"] for r in rows], **kw)
        axes[1].plot(xs, [r["latency_ms"]["p99"] for r in rows], **kw)
        if n != "direct":
            axes[2].plot(xs, [r["peak_rss_mb"] for r in rows], **kw)
    titles = ("aggregate tokens/s received", "stream latency p99 (ms)", "peak proxy RSS (MB)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels)
        ax.set_xticklabels([str(lv) for lv in levels])
        ax.set_xlabel("concurrent streams")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle("Concurrent full-size Claude Code requests, each answered with 250 tokens at 2,000 tok/s")
    return fig


# --------------------------------------------------------------------------

def failed_responses(res: dict[str, Any]) -> dict[str, int]:
    """Failed responses per "section/path", only where there were any."""
    out: dict[str, int] = {}
    o = res.get("overhead") or {}
    for n in ORDER:
        for label, count in (("small", get(o, "small", n, "errors", default=0)),
                             ("full-size", get(o, "full_errors", n, default=0)),
                             ("relay unpaced", get(res, "relay_unpaced", n, "errors", default=0)),
                             ("relay paced", get(res, "relay_paced", n, "errors", default=0))):
            if count:
                out[f"{label}/{n}"] = count
        for level, row in (get(res, "concurrency", n, default={}) or {}).items():
            if row.get("errors"):
                out[f"concurrency {level}/{n}"] = row["errors"]
    return out


def markdown(res: dict[str, Any], images: list[str]) -> str:
    m = res.get("machine", {})
    v = res.get("versions", {})
    errors = res.get("errors") or {}
    parts = [
        "# `make bench` results",
        "",
        f"Run {res.get('date', '?')}{' (quick mode)' if res.get('quick') else ''}, "
        f"{fmt(res.get('wall_seconds'), 0)} s wall.  "
        f"Machine: {m.get('nproc')} CPUs ({m.get('cpu')}), {m.get('memory_gib')} GiB, {m.get('os')}, "
        f"kernel {m.get('kernel')}, Python {m.get('python')}; load average "
        f"{' '.join(m.get('loadavg_start', []))} at the start, {' '.join(m.get('loadavg_end', []))} at the end.",
        "",
        f"Versions: LiteLLM {v.get('litellm')} (openai {v.get('openai')}, fastapi {v.get('fastapi')}, "
        f"uvicorn {v.get('uvicorn')}) for both ccq and the blog recipe's setup; claude-code-router {v.get('ccr', '–')} "
        f"on Node {v.get('node')}; Claude Code {v.get('claude_code_pin')} "
        f"(the captured request replayed here came from {v.get('claude_code_fixture')}).",
        "",
        "All four paths ran in the same run against the same fake Cerebras processes on 127.0.0.1, "
        "requests interleaved with a rotating first place.  **Ratios matter more than absolute "
        "times**: this 2-core machine is shared and noisy.  Targets are the ones issues 7 and 8 set; "
        "they are reported, not asserted.",
        "",
        "## Headline",
        "",
        headline_table(res),
        "",
        "Reading the table: *direct* is the client talking to the fake upstream itself (OpenAI chat "
        "completions); the proxies get the Anthropic `/v1/messages` body Claude Code sends.  "
        "\"Added\" rows subtract direct's value from the same run.  The first callback row is "
        "bench/bench_callback.py's figure; the second times ccq's and the recipe's hooks alike, "
        "each call on a fresh copy (the recipe's hook edits the request in place).",
        "",
    ]
    bad = failed_responses(res)
    if bad:
        parts += ["**Failed responses** (non-200, cut or broken streams; figures that include them "
                  "are not comparable): " + "; ".join(f"{k}: {v}" for k, v in bad.items()), ""]
    if errors:
        parts += ["Sections that failed or were skipped in this run:", ""]
        parts += [f"- {k}: {str(e)[:400]}" for k, e in errors.items()] + [""]
    parts += ["## Request overhead", "", overhead_table(res), "",
              "## Streaming relay (one token per chunk)", "", relay_table(res), "",
              "*Tokens sharing a read*: token events that reached the client in the same `recv()` as "
              "another one.  With the upstream paced at 2,000 tok/s (one event every 500 µs), direct's "
              "share is what the fake's own scheduling jitter produces; a proxy that buffers or "
              "coalesces chunks shows a higher share.  CPU is utime+stime of the proxy's process tree "
              "from /proc/PID/stat across the stream (0.3 s after it included), minus its idle rate.",
              "", "## Concurrency (full-size Claude Code requests, streamed)", "", concurrency_table(res), "",
              "## Start-up and memory", "", startup_table(res), "",
              "## The first ccq after a login (no systemd)", "", login_table(res), "",
              "## Callback cost per call", "", callback_table(res), "",
              "## Provisioning", "", provisioning_table(res), ""]
    if images:
        parts += ["## Plots", ""] + [f"![{i}]({i})" for i in images] + [""]
    parts += ["Raw numbers of this run: `bench/results/tmp/` (not committed).  How each figure is "
              "measured: bench/README.md.", ""]
    return "\n".join(parts)


def write(res: dict[str, Any], out: Path) -> str:
    """Write RESULTS.md and the plots into ``out``; return the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    images = plots(res, out)
    text = markdown(res, images)
    (out / "RESULTS.md").write_text(text, encoding="utf-8")
    return text


if __name__ == "__main__":
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "bench/results/tmp/latest.json"
    print(write(json.loads(src.read_text()), REPO / "bench/results"))
