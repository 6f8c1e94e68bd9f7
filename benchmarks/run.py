#!/usr/bin/env python3
"""Speed and memory of diagnose against tshark/tcpdump on the same file in the same run.

Usage: python benchmarks/run.py [--packets 1000000] [--repeat 3] [--cases flows,...] [--cold]
Makes benchmarks/out/big-N.pcap with gen_big.py (copied from shared/bench, seed fixed) when missing, then times whole
processes (wall clock, peak RSS of the child from wait4) and prints ratios. With --cold a first diagnose run uses an
empty numba cache, so it includes JIT compilation; the timed runs reuse the cache. Results go to benchmarks/out/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"

# name -> (our command, reference command(s)); {f} is the capture
EXPERT = {"tshark -z expert": ["tshark", "-n", "-q", "-r", "{f}", "-z", "expert"]}
CASES = {
    # issue 3: decode every packet + flow table
    "flows": (["diagnose", "flows", "{f}"], {"tshark -z conv,tcp": ["tshark", "-n", "-q", "-r", "{f}", "-z", "conv,tcp"]}),
    # issue 5: display filter and capture filter
    "filter-Y": (["diagnose", "count", "{f}", "-Y", "tcp.flags.reset == 1"],
                 {"tshark -Y": ["tshark", "-n", "-r", "{f}", "-Y", "tcp.flags.reset == 1", "-T", "fields", "-e",
                                "frame.number"]}),
    "filter-f": (["diagnose", "count", "{f}", "-f", "tcp[tcpflags] & tcp-rst != 0"],
                 {"tcpdump": ["tcpdump", "-n", "-r", "{f}", "tcp[tcpflags] & tcp-rst != 0"]}),
    # issue 4: full TCP analysis (Wireshark flags, Zeek states, every flow fact) written as JSON
    "tcp-analysis": (["diagnose", "flows", "--json", "{f}"], EXPERT),
    # issue 8: the diagnosis with every playbook
    "analyze": (["diagnose", "{f}", "--playbook", "all", "--format", "json", "-o", "/dev/null"], EXPERT),
    "info": (["diagnose", "info", "--no-checksums", "{f}"], {"capinfos": ["capinfos", "{f}"]}),
}
OK_CODES = {"analyze": (0, 1)}  # 1 = findings at or above --fail-on: a normal outcome here


# A user's environment: an installed package has its bytecode compiled (pip does it at install time), and output
# is buffered. A development shell that sets these would time Python compiling ~40 modules and a write per line.
USER_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED")}


def run(cmd: list[str], env: dict | None = None, ok=(0,)) -> tuple[float, int]:
    """(wall seconds, peak RSS in MB) of one whole process, output discarded."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env or USER_ENV)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in ok:
        raise SystemExit(f"failed: {' '.join(cmd)}: {proc.stderr.read().decode()[-500:]}")
    return wall, usage.ru_maxrss // 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--cold", action="store_true", help="also time a first run with an empty numba cache")
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    capture = OUT / f"big-{args.packets}.pcap"
    if not capture.exists():
        print(f"generating {capture} ...", flush=True)
        subprocess.run([sys.executable, str(HERE / "gen_big.py"), str(capture), str(args.packets)], check=True)
    diagnose = [sys.executable, "-m", "diagnose"]  # the installed package, or the one on PYTHONPATH
    results = {"capture": str(capture), "packets": args.packets, "cases": {}}
    for name in args.cases.split(","):
        ours, refs = CASES[name]
        ours = [*diagnose, *(a.format(f=capture) for a in ours[1:])]
        case: dict = {}
        if args.cold:
            with tempfile.TemporaryDirectory() as cold_cache:
                cold = run(ours, env={**USER_ENV, "NUMBA_CACHE_DIR": cold_cache}, ok=OK_CODES.get(name, (0,)))
            case["diagnose_first_run_s"] = round(cold[0], 3)
        run(ours, ok=OK_CODES.get(name, (0,)))  # untimed: writes the bytecode cache an installed package ships with
        warm = [run(ours, ok=OK_CODES.get(name, (0,))) for _ in range(args.repeat)]
        case["diagnose_s"] = round(statistics.median(w[0] for w in warm), 3)
        case["diagnose_rss_mb"] = max(w[1] for w in warm)
        for ref_name, ref_cmd in refs.items():
            if not shutil.which(ref_cmd[0]):
                continue
            times = [run([a.format(f=capture) for a in ref_cmd]) for _ in range(args.repeat)]
            t = statistics.median(x[0] for x in times)
            case[ref_name] = {"s": round(t, 3), "rss_mb": max(x[1] for x in times),
                              "times_faster": round(t / case["diagnose_s"], 2)}
        results["cases"][name] = case
        print(name, json.dumps(case), flush=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
