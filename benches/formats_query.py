"""DuckDB's time for "speeders of a day" over the formats benchmark's outputs (benches/formats.rs).

    python formats_query.py BASE

BASE holds jsonl/, jsonl+zstd/ and parquet+zstd/ (Hive layout). Prints one line per format: the
median of 5 runs and the answer's first row (the same in each).
"""
import statistics
import sys
import time

import duckdb

base = sys.argv[1]
sources = {
    "jsonl": f"read_json('{base}/jsonl/speeders/*/*/*/*/*.jsonl', format='newline_delimited')",
    "jsonl+zstd": f"read_json('{base}/jsonl+zstd/speeders/*/*/*/*/*.jsonl.zst', format='newline_delimited')",
    "parquet+zstd": f"read_parquet('{base}/parquet+zstd/speeders/dt=*/hr=*/*.parquet', hive_partitioning=true)",
}
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
for name, source in sources.items():
    query = (
        f"SELECT vin, count(*) AS windows, sum(speeding_readings) AS speeding, max(max_speed) AS top FROM {source} "
        "WHERE window_start >= TIMESTAMPTZ '2025-11-25 00:00:00+00' AND window_start < TIMESTAMPTZ '2025-11-26 00:00:00+00' "
        "GROUP BY vin ORDER BY speeding DESC, vin LIMIT 10"
    )
    times, first = [], None
    for _ in range(5):
        started = time.perf_counter()
        rows = con.execute(query).fetchall()
        times.append(time.perf_counter() - started)
        first = rows[0] if rows else None
    print(f"  {name:<14} {statistics.median(times) * 1000:8.0f} ms   {first}")
