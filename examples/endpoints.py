"""Fetch every endpoint of a FlightInfo at once with pyarrow, each from its first location that
answers; the rows keep the endpoints' order.

Run with: `make run` (or several replicas, see the README's "Replicas"), then
`.venv/bin/python examples/endpoints.py [grpc://127.0.0.1:50051]`.

A FlightInfo from Bridge replicas may split a big answer into endpoints whose locations name the
owning replica first and another one second. pyarrow does not follow locations by itself (ADBC
and JDBC do); this is the loop an application writes. An endpoint with no locations is redeemed
on the server that was asked.
"""
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.flight as flight


def fetch(asked, endpoint, options):
    uris = [loc.uri.decode() if isinstance(loc.uri, bytes) else str(loc.uri) for loc in endpoint.locations]
    error = None
    for uri in uris or [asked]:
        try:
            return flight.connect(uri).do_get(endpoint.ticket, options).read_all()
        except (flight.FlightUnavailableError, flight.FlightTimedOutError) as e:
            print(f"  {uri} did not answer ({e}); trying the next location", file=sys.stderr)
            error = e
    raise error


def main():
    asked = sys.argv[1] if len(sys.argv) > 1 else "grpc://127.0.0.1:50051"
    options = flight.FlightCallOptions()  # add headers=[client.authenticate_basic_token(u, p)] with auth on
    ticket = {"query": "scan", "dataset": "yellow", "columns": ["tpep_pickup_datetime", "trip_distance"]}
    started = time.perf_counter()
    info = flight.connect(asked).get_flight_info(flight.FlightDescriptor.for_command(json.dumps(ticket)), options)
    print(f"{json.dumps(ticket)}\n  -> {len(info.endpoints)} endpoint(s)")
    with ThreadPoolExecutor(max_workers=max(1, len(info.endpoints))) as pool:
        parts = list(pool.map(lambda e: fetch(asked, e, options), info.endpoints))
    table = pa.concat_tables(parts)
    print(f"  -> {table.num_rows} rows from {len(parts)} part(s) in {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
