"""Runs fleetflow, Apache Flink and Bytewax over one generated file and compares them (run.sh).

Each system runs each query as a process of its own; the harness measures its wall time and its
peak memory (the sum of the resident memory of the process and all its descendants, sampled every
50 ms: PyFlink's JVM is a child of its Python process) and counts each output stream's rows.
A peer's rows must equal fleetflow's, stream by stream; a difference is printed and marks the
table row.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STREAMS = {"tumbling": ["speed_windows"], "full": ["speed_windows", "speeders", "alerts"]}


def descendants(pid):
    """`pid` and every process below it, from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def rss_bytes(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total


def measured(command, env=None):
    """Runs `command`: (wall seconds, peak resident bytes of its process tree)."""
    start = time.monotonic()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, rss_bytes(descendants(proc.pid)))
        time.sleep(0.05)
    wall = time.monotonic() - start
    err = proc.stderr.read().decode(errors="replace")
    if proc.returncode != 0:
        sys.exit(f"{command[0]} failed ({proc.returncode}):\n{err[-4000:]}")
    return wall, peak


def lines_under(path):
    """Lines in every file under `path` (Flink's and fleetflow's outputs are folders of parts)."""
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(sum(1 for _ in open(p, "rb")) for p in files)


def run_fleetflow(args, query, source, out):
    config = out.parent / f"fleetflow-{query}.toml"
    enabled = ", ".join(f'"{s}"' for s in STREAMS[query])
    config.write_text(f"[analyses]\nenabled = [{enabled}]\n")
    command = [args.fleetflow, "--log", "warn", "run", "-w", str(args.workers), "--config", str(config)]
    wall, peak = measured(command + ["--input", str(source), "--output", str(out)])
    return wall, peak, {s: lines_under(out / s) if (out / s).exists() else 0 for s in STREAMS[query]}


def run_flink(args, query, source, out):
    wall, peak = measured([sys.executable, str(HERE / "flink_job.py"), query, str(source), str(out)])
    return wall, peak, {s: lines_under(out / s) if (out / s).exists() else 0 for s in STREAMS[query]}


def run_bytewax(args, query, source, out):
    env = dict(os.environ, PEERS_QUERY=query, PEERS_INPUT=str(source), PEERS_OUTPUT=str(out))
    wall, peak = measured([sys.executable, "-m", "bytewax.run", f"{HERE / 'bytewax_job.py'}:flow"], env=env)
    return wall, peak, {s: lines_under(out / f"{s}.csv") for s in STREAMS[query]}


RUNNERS = {"fleetflow": run_fleetflow, "flink": run_flink, "bytewax": run_bytewax}
NAMES = {
    "fleetflow": "fleetflow (-w {workers})",
    "flink": "Apache Flink 2.3 (PyFlink SQL, defaults)",
    "bytewax": "Bytewax 0.21 (1 worker)",
}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--fleetflow", required=True)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--vehicles", type=int, default=2000)
    p.add_argument("--duration-secs", type=int, default=1800)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--systems", default="fleetflow,flink,bytewax")
    p.add_argument("--queries", default="tumbling,full")
    args = p.parse_args()
    data = args.data / f"v{args.vehicles}-s{args.duration_secs}"
    source = data / "readings-000.txt"
    if not source.exists():
        subprocess.run(
            [args.fleetflow, "--log", "warn", "generate", "--files", "1", "--vehicles", str(args.vehicles),
             "--duration-secs", str(args.duration_secs), "--speeder-fraction", "0.3", "--output", str(data)],
            check=True,
        )
    readings = lines_under(source)
    rows, failures = [], 0
    for query in args.queries.split(","):
        expected = None
        for system in args.systems.split(","):
            out = data / "out" / f"{system}-{query}"
            subprocess.run(["rm", "-rf", str(out)], check=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            wall, peak, counts = RUNNERS[system](args, query, source, out)
            expected = expected or (counts if system == "fleetflow" else None)
            same = expected is None or counts == expected
            failures += not same
            check = "reference" if system == "fleetflow" else ("same rows" if same else f"DIFFERENT: {counts} vs {expected}")
            name = NAMES[system].format(workers=args.workers)
            rows.append(f"| {query} | {name} | {wall:.1f} s | {readings / wall:,.0f} | {peak / 2**20:,.0f} MiB | "
                        f"{', '.join(f'{s} {n:,}' for s, n in counts.items())} | {check} |")
            print(rows[-1], flush=True)
    table = "\n".join(
        [f"{readings:,} readings of {args.vehicles:,} vehicles in one file ({source.stat().st_size / 1e6:,.0f} MB):", "",
         "| query | system | wall time | readings/s | peak memory | rows | check |", "|---|---|---|---|---|---|---|"] + rows)
    (args.data / "results.md").write_text(table + "\n")
    print("\n" + table)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
