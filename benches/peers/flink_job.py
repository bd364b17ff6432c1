"""Apache Flink (PyFlink's SQL, default settings) over a file of readings, for the peers benchmark.

Usage: python flink_job.py QUERY INPUT OUTPUT_DIR
QUERY is `tumbling` (every vehicle's 60 s tumbling speed window) or `full` (the tumbling windows,
the speeders among them, and alerts from 5-minute sliding windows, sliding by a minute). The
watermark trails the highest event time by 5 s, as fleetflow's allowed lateness does. The alert
rule is fleetflow's: a sliding window whose average speed is above 80 mph while the same vehicle's
window one slide earlier was not (or had no readings). Each output is written as CSV files under
OUTPUT_DIR/<stream>/.
"""

import sys

from pyflink.table import EnvironmentSettings, TableEnvironment

SPEED_LIMIT_MPH = 65.0
ALERT_MPH = 80.0


def main(query: str, source: str, out: str) -> None:
    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    env.get_config().set("table.local-time-zone", "UTC")
    env.execute_sql(f"""
        CREATE TABLE readings (
            record_id BIGINT, ts_ms BIGINT, vin STRING, lon DOUBLE, lat DOUBLE, speed DOUBLE,
            ts AS TO_TIMESTAMP_LTZ(ts_ms, 3),
            WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
        ) WITH ('connector' = 'filesystem', 'path' = '{source}', 'format' = 'csv',
                'csv.field-delimiter' = ' ')""")
    for stream in ["speed_windows", "speeders", "alerts"]:
        env.execute_sql(f"""
            CREATE TABLE {stream}_out (vin STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3), v DOUBLE)
            WITH ('connector' = 'filesystem', 'path' = '{out}/{stream}', 'format' = 'csv')""")
    env.execute_sql("""
        CREATE TEMPORARY VIEW tumbling AS
        SELECT vin, window_start, window_end, COUNT(*) AS readings, AVG(speed) AS avg_speed,
               MAX(speed) AS max_speed, MIN(speed) AS min_speed
        FROM TABLE(TUMBLE(TABLE readings, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
        GROUP BY vin, window_start, window_end""")
    statements = env.create_statement_set()
    statements.add_insert_sql("INSERT INTO speed_windows_out SELECT vin, window_start, window_end, avg_speed FROM tumbling")
    if query == "full":
        statements.add_insert_sql(
            f"INSERT INTO speeders_out SELECT vin, window_start, window_end, max_speed FROM tumbling WHERE max_speed > {SPEED_LIMIT_MPH}")
        env.execute_sql("""
            CREATE TEMPORARY VIEW sliding AS
            SELECT vin, window_start, window_end, window_time, AVG(speed) AS avg_speed
            FROM TABLE(HOP(TABLE readings, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '5' MINUTE))
            GROUP BY vin, window_start, window_end, window_time""")
        env.execute_sql("""
            CREATE TEMPORARY VIEW sliding_with_previous AS
            SELECT vin, window_start, window_end, avg_speed,
                   LAG(avg_speed) OVER (PARTITION BY vin ORDER BY window_time) AS previous_avg,
                   LAG(window_end) OVER (PARTITION BY vin ORDER BY window_time) AS previous_end
            FROM sliding""")
        statements.add_insert_sql(f"""
            INSERT INTO alerts_out SELECT vin, window_start, window_end, avg_speed FROM sliding_with_previous
            WHERE avg_speed > {ALERT_MPH} AND (previous_avg IS NULL OR previous_avg <= {ALERT_MPH}
                  OR previous_end <> window_end - INTERVAL '1' MINUTE)""")
    statements.execute().wait()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
