"""DuckDB, a real reader of fleetflow's outputs, compares one stream of two folder sinks of one run.

    python compare.py PLAIN OTHER STREAM COLUMNS [HOUR]

PLAIN is a folder sink's root with JSON lines in the default layout (YYYY/MM/DD/HH); OTHER holds
the same stream as Parquet in the Hive layout (dt=YYYY-MM-DD/hr=HH) or as gzip or zstd JSON lines.
COLUMNS is a JSON object of column name to DuckDB type, in the stream's declared order. Prints one
JSON object: the row counts of both and the rows either has that the other has not (EXCEPT ALL
both ways: repeats count). With HOUR (YYYY-MM-DD/HH), only that hour is read from OTHER, through
its partition columns when it is Hive-style.
"""
import glob
import json
import sys

import duckdb

plain, other, stream, columns = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
hour = sys.argv[5] if len(sys.argv) > 5 else None
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
names = ", ".join(f'"{c}"' for c in columns)


def text_rows(files):
    """The rows of `raw` input-text files: space-separated, the time in epoch ms."""
    spec = {c: ("BIGINT" if c == "timestamp" else t) for c, t in columns.items()}
    source = f"read_csv('{files}', delim=' ', header=false, columns={spec!r}, auto_detect=false)"
    select = names.replace('"timestamp"', 'epoch_ms("timestamp")::TIMESTAMPTZ AS "timestamp"')
    return f"SELECT {select} FROM {source}"


def plain_rows():
    # The hour's folder (YYYY/MM/DD/HH), or every hour.
    folder = hour.replace("-", "/") if hour else "*/*/*/*"
    if stream == "raw":
        return text_rows(f"{plain}/raw/{folder}/*.jsonl")
    source = f"read_json('{plain}/{stream}/{folder}/*.jsonl', format='newline_delimited', columns={columns!r})"
    return f"SELECT {names} FROM {source}"


def other_rows():
    parquet = f"{other}/{stream}/dt=*/hr=*/*.parquet"
    if glob.glob(parquet):
        where = ""
        if hour:
            day, hr = hour.split("/")
            where = f" WHERE dt = '{day}' AND hr = '{hr}'"
        return f"SELECT {names} FROM read_parquet('{parquet}', hive_partitioning=true){where}"
    if stream == "raw":
        return text_rows(f"{other}/raw/*/*/*/*/*.jsonl.*")
    source = f"read_json('{other}/{stream}/*/*/*/*/*.jsonl.*', format='newline_delimited', columns={columns!r})"
    return f"SELECT {names} FROM {source}"


a = plain_rows()
b = other_rows()
count = lambda q: con.execute(f"SELECT count(*) FROM ({q})").fetchone()[0]
only_a = con.execute(f"SELECT count(*) FROM (({a}) EXCEPT ALL ({b}))").fetchone()[0]
only_b = con.execute(f"SELECT count(*) FROM (({b}) EXCEPT ALL ({a}))").fetchone()[0]
print(json.dumps({"plain": count(a), "other": count(b), "only_plain": only_a, "only_other": only_b}))
