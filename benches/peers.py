#!/usr/bin/env python3
"""trialport against its peers, in one sitting.

Runs the peer cases of the shared harness (../shared/bench/bench_peers.py: pyarrow, polars, pandas,
xlsxwriter, openpyxl, pyreadstat) and trialport's cases (the `tp_bench` binary of this crate, `tp_*`, and the
installed Python package through `py_cases.py`, `py_tp_*`) interleaved, each run a separate
process under `/usr/bin/time -v`, then prints one markdown table (median, min-max, rows/s, MB/s, peak RSS, ratio
of trialport to the best peer of its format) and the verdict on each target.

The harness is imported from its path (never copied): its `run_child` runs every child (for trialport it is
pointed at `tp_bench one CASE N`, which prints the same JSON keys as the harness's Python children, and at
`python py_cases.py one CASE N`, which runs the harness's own `run_one` on trialport's Python writers), its
`summarize` computes the statistics. Order within each repetition: format by format, peers and trialport next to
each other, the order reversed on odd repetitions, so drift in the machine's load hits every tool alike.

Usage (run-peers.sh sets up the venv, the binary and the data, then calls this):
    python peers.py --tp-bench target/release/tp_bench [--harness ../shared/bench/bench_peers.py]
                    [--py PYTHON (with the trialport package; default this interpreter)]
                    [--reps 3] [--n 1000000] [--xlsx-n 100000] [--only SUBSTR[,SUBSTR]] [--max-run-s 60]
                    [--results FILE.jsonl] [--markdown FILE.md]
    python peers.py --table FILE.jsonl      # re-print the tables of an earlier sitting
Input: $BENCH_DATA/lb_<N>.parquet (gen_lb.py N); scratch: $BENCH_OUT (both as the harness).
"""
import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# trialport cases: case -> (tool label, format label as the harness spells it)
TP_LABELS = {
    "tp_csv": ("trialport csv", "CSV"),
    "tp_ndjson": ("trialport ndjson", "NDJSON"),
    "tp_json": ("trialport json (array of records)", "JSON array of records"),
    "tp_parquet_zstd": ("trialport parquet (compression=zstd)", "Parquet (zstd)"),
    "tp_parquet_snappy": ("trialport parquet (compression=snappy)", "Parquet (snappy)"),
    "tp_ipc": ("trialport arrow-ipc", "Arrow IPC file (uncompr.)"),
    "tp_xlsx": ("trialport xlsx", "XLSX"),
    "tp_dataset_json": ("trialport dataset-json", "Dataset-JSON 1.1 (hand-rolled)"),
    "tp_xpt": ("trialport xpt (version 5)", "XPT v5"),
    # the Python package (py_cases.py), the same labels as there
    "py_tp_csv": ("trialport.write (Python, pyarrow in)", "CSV"),
    "py_tp_parquet_zstd": ("trialport.write compression=zstd (Python, pyarrow in)", "Parquet (zstd)"),
    "py_tp_xpt": ("trialport.write (Python, polars in)", "XPT v5"),
    "py_tp_dataset_json": ("trialport.write dataset-json (Python, polars in)", "Dataset-JSON 1.1 (hand-rolled)"),
}

# Run order: (group, peer cases, trialport cases, "n" or "xlsx_n"). trialport cases named py_* run the Python
# package (py_cases.py), the others tp_bench. XPT v5's peers are pyreadstat.write_xport given a polars frame and
# given a pandas frame (12-38 s a run each). Dataset-JSON's peers are the harness's two hand-rolled writers (no
# mainstream Python writer exists); trialport writes the same layout (rows as arrays under the header).
GROUPS = [
    ("CSV", ["pa_csv", "pl_csv", "pd_csv"], ["tp_csv", "py_tp_csv"], "n"),
    ("Parquet (zstd)", ["pa_parquet_zstd", "pl_parquet"], ["tp_parquet_zstd", "py_tp_parquet_zstd"], "n"),
    ("Parquet (snappy)", ["pa_parquet_snappy", "pd_parquet"], ["tp_parquet_snappy"], "n"),
    ("Arrow IPC", ["pa_ipc", "pl_ipc", "pa_feather"], ["tp_ipc"], "n"),
    ("NDJSON", ["pl_ndjson", "pd_ndjson"], ["tp_ndjson"], "n"),
    ("JSON", [], ["tp_json"], "n"),
    ("Dataset-JSON", ["pd_dsjson_tojson", "pl_dsjson_stdlib"], ["tp_dataset_json", "py_tp_dataset_json"], "n"),
    ("XPT v5", ["pl_xpt5", "pd_xpt5"], ["tp_xpt", "py_tp_xpt"], "n"),
    ("XLSX", ["pl_xlsx", "pd_xlsx_xlsxwriter", "pd_xlsx_openpyxl"], ["tp_xlsx"], "xlsx_n"),
]

# Peers a trialport case is compared with ("vs best peer"): same output format and compression.
COMPARABLE = {
    "tp_csv": ["pa_csv", "pl_csv", "pd_csv"],
    "tp_ndjson": ["pl_ndjson", "pd_ndjson"],
    "tp_parquet_zstd": ["pa_parquet_zstd", "pl_parquet"],
    "tp_parquet_snappy": ["pa_parquet_snappy", "pd_parquet"],
    "tp_ipc": ["pa_ipc", "pl_ipc"],
    "tp_xlsx": ["pl_xlsx", "pd_xlsx_xlsxwriter", "pd_xlsx_openpyxl"],
    "tp_dataset_json": ["pd_dsjson_tojson", "pl_dsjson_stdlib"],
    "tp_xpt": ["pl_xpt5", "pd_xpt5"],
    "py_tp_csv": ["pa_csv", "pl_csv", "pd_csv"],
    "py_tp_parquet_zstd": ["pa_parquet_zstd", "pl_parquet"],
    "py_tp_xpt": ["pl_xpt5", "pd_xpt5"],
    "py_tp_dataset_json": ["pd_dsjson_tojson", "pl_dsjson_stdlib"],
}

# The targets: trialport median / reference median must be at most `limit`.
# reference None = the fastest comparable peer.
TARGETS = [
    ("CSV at least as fast as the fastest peer", "tp_csv", None, 1.0),
    ("NDJSON at least as fast as the fastest peer", "tp_ndjson", None, 1.0),
    ("Parquet (zstd) within 1.2x of pyarrow", "tp_parquet_zstd", "pa_parquet_zstd", 1.2),
    ("Parquet (snappy) within 1.2x of pyarrow", "tp_parquet_snappy", "pa_parquet_snappy", 1.2),
    ("Arrow IPC within 1.2x of pyarrow", "tp_ipc", "pa_ipc", 1.2),
    ("XLSX at least 5x faster than polars write_excel", "tp_xlsx", "pl_xlsx", 0.2),
    ("Dataset-JSON at least 5x faster than the hand-rolled pandas writer", "tp_dataset_json",
     "pd_dsjson_tojson", 0.2),
    ("XPT v5 at least 20x faster than pyreadstat (polars in)", "tp_xpt", "pl_xpt5", 0.05),
    ("from Python: XPT v5 at least 20x faster than pyreadstat (polars in)", "py_tp_xpt", "pl_xpt5", 0.05),
    ("from Python: CSV at least as fast as pyarrow", "py_tp_csv", "pa_csv", 1.0),
    ("from Python: Parquet (zstd) within 1.2x of pyarrow", "py_tp_parquet_zstd", "pa_parquet_zstd", 1.2),
]


def load_harness(path):
    spec = importlib.util.spec_from_file_location("bench_peers", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_tp(h, tp_bench, case, n):
    """The harness's run_child, pointed at `tp_bench one CASE N` instead of `python bench_peers.py one CASE N`."""
    saved = (h.PY, h.HERE)
    h.PY, h.HERE = tp_bench, "one"
    try:
        return h.run_child([case, str(n)])
    finally:
        h.PY, h.HERE = saved


def run_py(h, python, case, n):
    """The harness's run_child, pointed at `PYTHON py_cases.py one CASE N` (trialport's Python package)."""
    saved = (h.PY, h.HERE)
    h.PY, h.HERE = python, os.path.join(HERE, "py_cases.py")
    try:
        return h.run_child(["one", case, str(n)])
    finally:
        h.PY, h.HERE = saved


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    except OSError:
        pass
    versions = {}
    for pkg in ("pyarrow", "polars", "pandas", "numpy", "xlsxwriter", "openpyxl", "pyreadstat", "trialport"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = "missing"
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "kernel": platform.release(), "versions": versions}


def render(summary, rows, info, started, finished, loads):
    by_case = {s["case"]: s for s in summary}
    cpu = {}
    for r in rows:
        if "write_cpu_s" in r and "error" not in r:
            cpu.setdefault(r["case"], []).append(r["write_cpu_s"])
    cpu = {c: statistics.median(v) for c, v in cpu.items()}
    lines = []
    out = lines.append
    out(f"Sitting: {started:%Y-%m-%d %H:%M}–{finished:%H:%M} UTC, {info['nproc']} cores ({info['cpu']}), "
        f"load average 1 min during the runs: median {statistics.median(loads):.2f}, max {max(loads):.2f}. "
        f"Python {info['python']}, " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()) + ".")
    out("")
    out("| format | tool | N | runs | median s | min–max s | CPU s | rows/s | MB/s | peak RSS MiB (pre-write) | "
        "output MB | CPU/wall | vs best peer |")
    out("|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|")
    order = [c for _, peers, tps, _ in GROUPS for c in peers + tps]
    order += [s["case"] for s in summary if s["case"] not in order]
    for case in order:
        s = by_case.get(case)
        if s is None:
            continue
        ratio = ""
        if case in COMPARABLE:
            peers = [by_case[p] for p in COMPARABLE[case] if p in by_case]
            if peers:
                best = min(peers, key=lambda p: p["median_s"])
                ratio = f"{s['median_s'] / best['median_s']:.2f}x ({best['tool']})"
        tool = f"**{s['tool']}**" if case.startswith(("tp_", "py_tp_")) else s["tool"]
        rss = (f"{s['peak_rss_mib']:.0f} ({s['pre_write_rss_mib']:.0f})" if s["pre_write_rss_mib"]
               else f"{s['peak_rss_mib']:.0f}")
        out(f"| {s['format']} | {tool} | {s['n']:,} | {s['runs']} | {s['median_s']:.3f} | "
            f"{s['min_s']:.3f}–{s['max_s']:.3f} | {cpu.get(case, 0):.3f} | {s['rows_per_s']:,.0f} | {s['MB_per_s']:.1f} | {rss} | "
            f"{s['out_MB']:.1f} | {s['cpu_per_wall']:.2f} | {ratio} |")
    out("")
    out("| target | trialport median s | reference | reference median s | ratio | limit | verdict | "
        "CPU-time ratio |")
    out("|---|---:|---|---:|---:|---:|---|---:|")
    for label, case, ref, limit in TARGETS:
        s = by_case.get(case)
        peers = [by_case[p] for p in (COMPARABLE[case] if ref is None else [ref]) if p in by_case]
        if s is None or not peers:
            out(f"| {label} | - | - | - | - | {limit}x | not measured | - |")
            continue
        best = min(peers, key=lambda p: p["median_s"])
        r = s["median_s"] / best["median_s"]
        verdict = "met" if r <= limit else "NOT met"
        c_ref = cpu.get(best["case"])
        c_ratio = f"{cpu[case] / c_ref:.2f}x" if c_ref and case in cpu else "-"
        out(f"| {label} | {s['median_s']:.3f} | {best['tool']} | {best['median_s']:.3f} | {r:.2f}x | "
            f"{limit}x | {verdict} | {c_ratio} |")
    return "\n".join(lines)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tp-bench", default=os.path.join(REPO, "target", "release", "tp_bench"))
    ap.add_argument("--harness", default=os.path.join(REPO, "..", "shared", "bench", "bench_peers.py"))
    ap.add_argument("--py", default=sys.executable,
                    help="the Python that runs py_cases.py (needs the trialport package); default this one")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--xlsx-n", type=int, default=100_000)
    ap.add_argument("--only", default="",
                    help="run only cases whose name contains this (or one of these, comma-separated)")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the harness's raw-bytes ceiling runs")
    ap.add_argument("--table", metavar="RESULTS.jsonl",
                    help="only re-print the tables of an earlier results file")
    ap.add_argument("--max-run-s", type=float, default=60.0,
                    help="if the first run of a case exceeds this, skip its repeats")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    results_dir = os.path.join(REPO, "target", "bench-results")
    ap.add_argument("--results", default=os.path.join(results_dir, f"peers-{stamp}.jsonl"))
    ap.add_argument("--markdown", default=os.path.join(results_dir, f"peers-{stamp}.md"))
    a = ap.parse_args(argv)

    h = load_harness(os.path.abspath(a.harness))
    os.environ["PEER_BENCH_HARNESS"] = os.path.abspath(a.harness)  # for py_cases.py
    for case, labels in TP_LABELS.items():
        h.LABELS[case] = labels
    if a.table:
        with open(a.table) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        times = [r["at"] for r in rows if "at" in r] or [time.time()]
        utc = datetime.timezone.utc
        print(render(h.summarize(rows), rows, machine(),
                     datetime.datetime.fromtimestamp(min(times), utc),
                     datetime.datetime.fromtimestamp(max(times), utc),
                     [r["load1"] for r in rows if "load1" in r] or [0.0]))
        return 0
    if not os.access("/usr/bin/time", os.X_OK):
        sys.exit("peers.py: /usr/bin/time is missing (apt-get install time)")
    if not os.access(a.tp_bench, os.X_OK):
        sys.exit(f"peers.py: {a.tp_bench} is missing: cargo build --release -p trialport-benches")
    os.makedirs(h.OUT, exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(a.results)), exist_ok=True)

    plan = []  # (group, case, n, runner)
    for _, peers, tps, which in GROUPS:
        n = a.n if which == "n" else a.xlsx_n
        for c in peers:
            plan.append((c, n, "peer"))
        for c in tps:
            plan.append((c, n, "py" if c.startswith("py_") else "tp"))
    if not a.no_ceiling:
        plan.append(("ceil_pybytes", a.n, "ceil"))
    plan = [p for p in plan if any(o in p[0] for o in a.only.split(","))]
    if any(kind == "py" for _, _, kind in plan) and subprocess.run([a.py, "-c", "import trialport"]).returncode:
        sys.exit(f"peers.py: {a.py} cannot import trialport: build it into that venv (run-peers.sh does)")
    for n in sorted({n for _, n, _ in plan}):
        path = os.path.join(h.DATA, f"lb_{n}.parquet")
        if not os.path.exists(path):
            sys.exit(f"peers.py: {path} is missing: python {os.path.dirname(a.harness)}/gen_lb.py {n}")

    info = machine()
    print(f"# {len(plan)} cases x {a.reps} reps; data {h.DATA}; machine {info}", file=sys.stderr)
    started = datetime.datetime.now(datetime.timezone.utc)
    rows, loads, skip = [], [], set()
    with open(a.results, "a") as resf:
        for rep in range(a.reps):
            order = plan if rep % 2 == 0 else list(reversed(plan))
            for case, n, kind in order:
                if case in skip:
                    continue
                load1 = os.getloadavg()[0]
                loads.append(load1)
                if kind == "tp":
                    r = run_tp(h, a.tp_bench, case, n)
                elif kind == "py":
                    r = run_py(h, a.py, case, n)
                elif kind == "ceil":
                    r = h.run_child(["ceil_pybytes", str(n)])
                else:
                    r = h.run_child(["one", case, str(n)])
                r.update({"rep": rep, "load1": load1, "at": time.time()})
                r.setdefault("case", case)
                rows.append(r)
                resf.write(json.dumps(r) + "\n")
                resf.flush()
                print(json.dumps(r), file=sys.stderr, flush=True)
                if "error" in r:
                    skip.add(case)
                elif rep == 0 and r["write_s"] > a.max_run_s:
                    print(f"SKIP repeats of {case}: {r['write_s']:.0f}s > {a.max_run_s}s", file=sys.stderr)
                    skip.add(case)
    finished = datetime.datetime.now(datetime.timezone.utc)
    loads.append(os.getloadavg()[0])
    errors = [r for r in rows if "error" in r]
    text = render(h.summarize(rows), rows, info, started, finished, loads)
    if errors:
        text += "\n\nErrors:\n" + "\n".join(f"- {r['case']}: {r['error'][-300:]!r}" for r in errors)
    print(text)
    with open(a.markdown, "w") as f:
        f.write(text + "\n")
    print(f"\nresults: {a.results}\nmarkdown: {a.markdown}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
