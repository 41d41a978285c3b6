"""Flight SQL messages on the wire, for tests that drive pyarrow.flight the way JDBC does.

pyarrow has no Flight SQL client, so this encodes the few protobuf messages needed by hand
(field numbers from Arrow's FlightSql.proto and Flight.proto). Nothing here comes from Bridge.
"""
import pyarrow as pa
import pyarrow.flight as flight

PREFIX = "type.googleapis.com/arrow.flight.protocol.sql."


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(number, value):
    """One field: ints as varints, str/bytes as length-delimited."""
    if isinstance(value, bool) or isinstance(value, int):
        return varint(number << 3) + varint(int(value))
    if isinstance(value, str):
        value = value.encode()
    return varint((number << 3) | 2) + varint(len(value)) + value


def message(*fields):
    return b"".join(field(n, v) for n, v in fields if v is not None)


def parse(buf):
    """field number -> list of values (ints for varints, bytes for length-delimited)."""
    out, i = {}, 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(buf, i)
        elif wire == 2:
            n, i = _read_varint(buf, i)
            value, i = bytes(buf[i:i + n]), i + n
        else:
            raise ValueError(f"unexpected wire type {wire}")
        out.setdefault(number, []).append(value)
    return out


def _read_varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def any_of(name, payload):
    return message((1, PREFIX + name), (2, payload))


def unpack_any(buf):
    fields = parse(buf)
    return fields[1][0].decode().removeprefix(PREFIX), fields.get(2, [b""])[0]


def command(name, *fields):
    return flight.FlightDescriptor.for_command(any_of(name, message(*fields)))


def get_sql_info(*infos):
    return command("CommandGetSqlInfo", *[(1, i) for i in infos])


def get_tables(include_schema=True, table_name_filter=None):
    return command("CommandGetTables", (3, table_name_filter), (5, include_schema))


def get_xdbc_type_info(data_type=None):
    return command("CommandGetXdbcTypeInfo", (1, data_type))


def read(client, descriptor, options=None):
    """GetFlightInfo, then DoGet on its one endpoint: what every Flight SQL client does."""
    info = client.get_flight_info(descriptor, options)
    [endpoint] = info.endpoints
    return info, client.do_get(endpoint.ticket, options).read_all()


def action(client, kind, body, options=None):
    return [r.body.to_pybytes() for r in client.do_action(flight.Action(kind, body), options)]


def prepare(client, sql, options=None):
    """CreatePreparedStatement -> (handle, dataset schema, parameter schema)."""
    [result] = action(client, "CreatePreparedStatement",
                      any_of("ActionCreatePreparedStatementRequest", message((1, sql))), options)
    name, payload = unpack_any(result)
    assert name == "ActionCreatePreparedStatementResult", name
    fields = parse(payload)
    schema = lambda n: pa.ipc.read_schema(pa.py_buffer(fields[n][0])) if n in fields else pa.schema([])
    return fields[1][0], schema(2), schema(3)


def prepared(handle):
    return command("CommandPreparedStatementQuery", (1, handle))


def bind(client, handle, batch, options=None):
    """DoPut the parameters; returns the handle to execute with (Bridge's carries the values)."""
    writer, reader = client.do_put(prepared(handle), batch.schema, options)
    writer.write_batch(batch)
    writer.done_writing()
    metadata = reader.read()
    writer.close()
    fields = parse(metadata.to_pybytes()) if metadata is not None else {}
    return fields.get(1, [handle])[0]


def close(client, handle, options=None):
    return action(client, "ClosePreparedStatement",
                  any_of("ActionClosePreparedStatementRequest", message((1, handle))), options)


def cancel_flight_info(client, info):
    """CancelFlightInfo -> CancelStatus (1 CANCELLED, 2 CANCELLING, 3 NOT_CANCELLABLE)."""
    [result] = action(client, "CancelFlightInfo", message((1, info.serialize())))
    return parse(result).get(1, [0])[0]
