"""pyarrow's S3 filesystem, a real reader of fleetflow's S3 sink, copies a prefix to a folder.

    python s3_download.py ENDPOINT BUCKET PREFIX DEST

ENDPOINT is the S3 endpoint (http://127.0.0.1:PORT for the emulator). Prints a JSON object: the
objects' keys under PREFIX, sorted, and, for the Parquet ones, their total rows as pyarrow reads them.
"""
import json
import os
import sys

import pyarrow.fs as fs
import pyarrow.parquet as pq

endpoint, bucket, prefix, dest = sys.argv[1:5]
scheme, host = endpoint.split("://", 1)
s3 = fs.S3FileSystem(
    endpoint_override=host,
    scheme=scheme,
    access_key=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
    secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
    region=os.environ.get("AWS_REGION", "us-east-1"),
)
infos = s3.get_file_info(fs.FileSelector(f"{bucket}/{prefix}", recursive=True, allow_not_found=True))
keys, rows = [], 0
for info in infos:
    if info.type != fs.FileType.File:
        continue
    relative = info.path[len(f"{bucket}/{prefix}"):].lstrip("/")
    keys.append(relative)
    if relative.endswith(".parquet"):
        rows += pq.read_table(info.path, filesystem=s3).num_rows
    target = os.path.join(dest, relative)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with s3.open_input_stream(info.path, compression=None) as src, open(target, "wb") as out:
        out.write(src.read())
print(json.dumps({"keys": sorted(keys), "parquet_rows": rows}))
