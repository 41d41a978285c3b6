"""The REST peer of seed 001: FastAPI + DuckDB over the Parquet files, answering JSON.

Written the way seed 001 plans it (FastAPI in front of DuckDB, the p90 filtered by
tpep_pickup_datetime), the plain way: one DuckDB cursor per request, rows to dicts, FastAPI's
default JSON response.

    python benches/fastapi_peer.py FILE.parquet [...]   (prints "peer on http://127.0.0.1:PORT")
"""
import socket
import sys

import duckdb
import uvicorn
from fastapi import FastAPI

FILES = sys.argv[1:]
con = duckdb.connect()
con.execute(f"CREATE VIEW yellow AS SELECT * FROM read_parquet({FILES!r})")
app = FastAPI()


@app.get("/p90")
def p90(start: str, end: str, percentile: float = 0.9):
    cur = con.cursor()
    where = "tpep_pickup_datetime >= CAST(? AS TIMESTAMP) AND tpep_pickup_datetime < CAST(? AS TIMESTAMP)"
    (threshold,) = cur.execute(f"SELECT quantile_cont(trip_distance, ?) FROM yellow WHERE {where}",
                               [percentile, start, end]).fetchone()
    rel = cur.execute(f"SELECT * FROM yellow WHERE {where} AND trip_distance > ?", [start, end, threshold])
    columns = [d[0] for d in rel.description]
    return {"threshold": threshold, "trips": [dict(zip(columns, row)) for row in rel.fetchall()]}


if __name__ == "__main__":
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(f"peer on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])
