#!/usr/bin/env python3
"""trialport's Python package as one more child of the peer harness (`../shared/bench/bench_peers.py`).

    python py_cases.py one CASE N     load $BENCH_DATA/lb_N.parquet (untimed), time ONE write, print a JSON line
    python py_cases.py cases          list the cases, one per line

The cases call the installed `trialport` package (build it in release for a fair figure: run-peers.sh does). The
harness is imported from its path (never copied: `$PEER_BENCH_HARNESS`, set by peers.py, by default
../shared/bench/bench_peers.py), the cases are added to its `CASES` and its own `run_one` runs them, so the load
(its `load(kind, n)`: a pyarrow Table or a polars DataFrame), the timing window (the writer call only), the CPU
time, the RSS figures, the output path in `$BENCH_OUT` and the JSON line are exactly those of its Python children.
"""
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.environ.get("PEER_BENCH_HARNESS") or os.path.join(HERE, "..", "..", "shared", "bench", "bench_peers.py")


def load_harness(path):
    spec = importlib.util.spec_from_file_location("bench_peers", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def w_py_tp_csv(t, p):
    import trialport
    trialport.write(t, p, "csv")


def w_py_tp_parquet_zstd(t, p):
    import trialport
    trialport.write(t, p, "parquet", compression="zstd")


def w_py_tp_xpt(df, p):
    import trialport
    trialport.write(df, p, dataset="LB")  # format from the extension; default options = version 5


def w_py_tp_dataset_json(df, p):
    import trialport
    trialport.write(df, p, "dataset-json", dataset="LB")


# case -> (loader kind, writer, file extension, format label, tool label), the harness's CASES layout
CASES = {
    "py_tp_csv": ("pa", w_py_tp_csv, "csv", "CSV", "trialport.write (Python, pyarrow in)"),
    "py_tp_parquet_zstd": ("pa", w_py_tp_parquet_zstd, "parquet", "Parquet (zstd)",
                           "trialport.write compression=zstd (Python, pyarrow in)"),
    "py_tp_xpt": ("pl", w_py_tp_xpt, "xpt", "XPT v5", "trialport.write (Python, polars in)"),
    "py_tp_dataset_json": ("pl", w_py_tp_dataset_json, "json", "Dataset-JSON 1.1 (hand-rolled)",
                           "trialport.write dataset-json (Python, polars in)"),
}


def main(argv):
    if argv[:1] == ["cases"]:
        print("\n".join(CASES))
        return 0
    if len(argv) != 3 or argv[0] != "one" or argv[1] not in CASES:
        sys.exit(f"usage: py_cases.py one CASE N | py_cases.py cases (CASE: {', '.join(CASES)})")
    h = load_harness(os.path.abspath(HARNESS))
    for case, (kind, writer, ext, fmt, tool) in CASES.items():
        h.CASES[case] = (kind, writer, ext, fmt, tool, h.ALL_N)
    h.run_one(argv[1], int(argv[2].replace("_", "")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
