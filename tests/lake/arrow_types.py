"""pyarrow, a real reader of fleetflow's Parquet files, prints the column types of one stream.

    python arrow_types.py ROOT STREAM

ROOT is a folder sink's root in the Hive layout. Prints a JSON object: column name to Arrow type,
for the files' own columns and the partition columns pyarrow derives from the folders.
"""
import json
import sys

import pyarrow.dataset as ds

root, stream = sys.argv[1], sys.argv[2]
dataset = ds.dataset(f"{root}/{stream}", format="parquet", partitioning="hive")
table = dataset.to_table()
print(json.dumps({"rows": table.num_rows, "types": {f.name: str(f.type) for f in table.schema}}))
