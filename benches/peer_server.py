"""The peer Bridge is measured against: what a user would write in an afternoon.

A pyarrow.flight server with DuckDB-Python that answers the same JSON tickets by querying the
Parquet files on every request. Run: python benches/peer_server.py FILE... (prints its port).

One extra ticket, `{"query": "memory"}`, is not a peer but a ceiling: Arrow C++'s Flight server
streaming the whole dataset from a table already in RAM (no query, no I/O), in messages of the
size Bridge sends (2 MiB, or `"message_bytes": N`); `"rows": N` sends only the first N rows. No Flight server on this machine can stream
faster to the same client.
"""
import json
import sys

import duckdb
import pyarrow as pa
import pyarrow.flight as flight


class Peer(flight.FlightServerBase):
    def __init__(self, files):
        super().__init__("grpc://127.0.0.1:0")
        self.con = duckdb.connect()
        self.in_memory = None
        paths = ", ".join(f"'{f}'" for f in files)
        self.con.execute(f"CREATE VIEW yellow AS SELECT * FROM read_parquet([{paths}], union_by_name=true)")

    def do_get(self, context, ticket):
        t = json.loads(ticket.ticket)
        con = self.con.cursor()
        if t["query"] == "memory":
            if self.in_memory is None:
                self.in_memory = con.sql("SELECT * FROM yellow").to_arrow_table().combine_chunks()
            table = self.in_memory.slice(0, t["rows"]) if "rows" in t else self.in_memory
            rows = max(1, t.get("message_bytes", 2 << 20) * table.num_rows // max(1, table.nbytes))
            return flight.RecordBatchStream(pa.Table.from_batches(table.to_batches(max_chunksize=rows)))
        bounds = []
        if "from" in t:
            bounds.append(f"tpep_pickup_datetime >= TIMESTAMP '{t['from']}'")
        if "to" in t:
            bounds.append(f"tpep_pickup_datetime < TIMESTAMP '{t['to']}'")
        where = " AND ".join(bounds) or "TRUE"
        if t["query"] == "p90":
            thr = con.execute(f"SELECT quantile_cont(trip_distance, 0.9) FROM yellow WHERE {where}").fetchall()[0][0]
            sql = f"SELECT * FROM yellow WHERE {where} AND trip_distance > {thr!r}"
        elif t["query"] == "outliers":
            sql = f"""WITH b AS (SELECT *, date_diff('microsecond', tpep_pickup_datetime, tpep_dropoff_datetime) / 3600000000.0 AS duration_hours
                       FROM yellow WHERE {where}),
                  c AS (SELECT *, CASE WHEN duration_hours > 0 THEN trip_distance / duration_hours END AS avg_speed_mph FROM b)
                  SELECT *, CASE WHEN NOT coalesce(duration_hours > 0 AND duration_hours <= 10, false) THEN 'duration'
                                 WHEN NOT coalesce(avg_speed_mph BETWEEN 2.5 AND 80, false) THEN 'speed'
                                 ELSE 'distance' END AS reason
                  FROM c WHERE NOT coalesce(duration_hours > 0 AND duration_hours <= 10 AND avg_speed_mph BETWEEN 2.5 AND 80
                                            AND trip_distance BETWEEN 0.1 AND 800, false)"""
        elif t["query"] == "scan":
            sql = f"SELECT * FROM yellow WHERE {where}"
        else:
            sql = t["sql"]
        reader = con.sql(sql).to_arrow_reader(65536)
        return flight.RecordBatchStream(reader)


if __name__ == "__main__":
    server = Peer(sys.argv[1:])
    print(f"peer serving on grpc://127.0.0.1:{server.port}", flush=True)
    server.serve()
