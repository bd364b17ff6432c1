"""Bytewax over a file of readings, for the peers benchmark: `python -m bytewax.run bytewax_job:flow`.

The environment says what to run: PEERS_QUERY (`tumbling` or `full`, as in flink_job.py),
PEERS_INPUT (the readings file) and PEERS_OUTPUT (a folder; each stream is one file in it).
Event time comes from each reading; as Bytewax's documentation advises for replayed data, the
EventClock's `to_system_utc` returns None (windows close on later readings and at the end of the
input, not on the system clock) and windows are folded with `ordered=False`. The watermark
trails the highest event time by 5 s, as fleetflow's allowed lateness does (Bytewax keeps a clock
per key: per vehicle). The alert rule is fleetflow's: a 5-minute sliding window (sliding by a
minute) whose average speed is above 80 mph while the same vehicle's window one slide earlier was
not (or had no readings).
"""

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import bytewax.operators as op
import bytewax.operators.windowing as win
from bytewax.connectors.files import FileSink, FileSource
from bytewax.dataflow import Dataflow

SPEED_LIMIT_MPH = 65.0
ALERT_MPH = 80.0
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MINUTE = timedelta(minutes=1)

QUERY = os.environ.get("PEERS_QUERY", "tumbling")
INPUT = os.environ.get("PEERS_INPUT", "readings.txt")
OUTPUT = Path(os.environ.get("PEERS_OUTPUT", "bytewax-out"))


def parse(line):
    """`record_id timestamp vin lon lat speed` -> (vin, (timestamp ms, speed))."""
    f = line.split()
    return (f[2], (int(f[1]), float(f[5])))


def event_time(value):
    return EPOCH + timedelta(milliseconds=value[0])


def fresh():
    # readings, sum, max, min
    return [0, 0.0, float("-inf"), float("inf")]


def fold(acc, value):
    speed = value[1]
    acc[0] += 1
    acc[1] += speed
    acc[2] = max(acc[2], speed)
    acc[3] = min(acc[3], speed)
    return acc


def merge(a, b):
    return [a[0] + b[0], a[1] + b[1], max(a[2], b[2]), min(a[3], b[3])]


def sink(stream_name, up):
    path = OUTPUT / f"{stream_name}.csv"
    path.touch()
    op.output(f"{stream_name}-out", up, FileSink(path))


def window_line(length):
    def line(item):
        vin, (window_id, acc) = item
        start = EPOCH + window_id * MINUTE
        # (The file sink takes (key, line) pairs: the key routes to its one partition.)
        return (vin, f"{vin},{start.isoformat()},{(start + length).isoformat()},{acc[0]},{acc[1] / acc[0]},{acc[2]},{acc[3]}")

    return line


def episodes(state, item):
    """Keeps, per vehicle, whether its previous sliding window was above the threshold."""
    window_id, acc = item
    above = acc[1] / acc[0] > ALERT_MPH
    previous = state or {}
    alert = above and not previous.get(window_id - 1, False)
    previous = {k: v for k, v in previous.items() if k >= window_id - 1}
    previous[window_id] = above
    return previous, (window_id, acc, alert)


def build():
    OUTPUT.mkdir(parents=True, exist_ok=True)
    clock = win.EventClock(event_time, wait_for_system_duration=timedelta(seconds=5), to_system_utc=lambda _: None)
    flow = Dataflow("peers")
    lines = op.input("in", flow, FileSource(INPUT))
    readings = op.map("parse", lines, parse)
    tumbling = win.fold_window(
        "tumbling", readings, clock, win.TumblingWindower(length=MINUTE, align_to=EPOCH), fresh, fold, merge, ordered=False
    )
    sink("speed_windows", op.map("tumbling-line", tumbling.down, window_line(MINUTE)))
    if QUERY == "full":
        speeders = op.filter("speeders", tumbling.down, lambda item: item[1][1][2] > SPEED_LIMIT_MPH)
        sink("speeders", op.map("speeders-line", speeders, window_line(MINUTE)))
        sliding = win.fold_window(
            "sliding",
            readings,
            clock,
            win.SlidingWindower(length=5 * MINUTE, offset=MINUTE, align_to=EPOCH),
            fresh,
            fold,
            merge,
            ordered=False,
        )
        marked = op.stateful_map("episodes", sliding.down, episodes)
        alerts = op.filter_map("alerts", marked, lambda item: (item[0], (item[1][0], item[1][1])) if item[1][2] else None)
        sink("alerts", op.map("alerts-line", alerts, window_line(5 * MINUTE)))
    return flow


flow = build()
