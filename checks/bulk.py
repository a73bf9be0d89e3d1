"""Updating many rows with different values in one statement.

Django's bulk_update builds a `CASE WHEN id = … THEN …` per row and per field;
for the few hundred rows a probe batch or a dispatcher tick touches, building
that expression dominated the workers' CPU (bench/fleet.py profile). On
PostgreSQL this sends each column as one array and joins on `unnest`, so the
statement's text is the same whatever the batch size; SQLite (the embedded
default, small by design) runs one prepared UPDATE per row.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections, models


@contextmanager
def bound_cursor(kept: bool = False) -> Iterator[Any]:
    """A cursor that sends parameters separately from the statement.

    Django's PostgreSQL cursors merge parameters into the SQL text on the
    client; for the hot path's statements of a thousand parameters that
    merging cost more CPU than PostgreSQL spent running them. This cursor
    shares Django's connection (and so its transaction), and database errors
    still arrive as Django's exceptions. `kept`: this thread's one cursor on
    the connection, made once and reused (the ping INSERT, where making a
    cursor per statement was a fifth of its CPU); never nest two kept ones.
    """
    connection = connections[DEFAULT_DB_ALIAS]  # one look-up, not one per attribute
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    import psycopg

    connection.ensure_connection()
    with connection.wrap_database_errors:
        if kept:
            cursor = _kept_cursor(connection.connection)
        else:
            cursor = psycopg.Cursor(connection.connection)
        try:
            # Logged like Django's own queries under DEBUG and in tests that count them.
            yield connection.make_debug_cursor(cursor) if connection.queries_logged else cursor
        finally:
            if not kept:
                cursor.close()


class _KeptCursor(threading.local):
    connection: Any = None  # the psycopg connection the cursor was made on
    cursor: Any = None


_kept = _KeptCursor()


def _kept_cursor(connection: Any) -> Any:
    if _kept.connection is not connection:  # a new connection since (reconnected, closed)
        import psycopg

        _kept.cursor, _kept.connection = psycopg.Cursor(connection), connection
    return _kept.cursor


def in_ids(column: str, ids: Sequence[int]) -> tuple[str, list[Any]]:
    """SQL for "`column` is one of `ids`" and its parameters (ids must not be empty).

    On PostgreSQL the ids go as one binary array, so the statement's text is
    the same for any number of them and the driver parses it once (psycopg
    caches short statements only); elsewhere an IN list.
    """
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%b)", [[int(i) for i in ids]]
    return f"{column} IN ({', '.join(['%s'] * len(ids))})", list(ids)


# Arrays go to PostgreSQL in binary (`%b`): psycopg dumps a text array element
# by element in Python, 3-7 times slower (a timestamp: 7 µs as text, 1 µs in
# binary). A binary array must hold one Python type, hence float() below.
#
# Field types whose values psycopg binds as they are: Django's preparation of
# them, one call per value, was most of update_rows' CPU. Datetimes must be
# aware, as everything Watchpost computes is.
BOUND_AS_IS = {
    "AutoField", "BigAutoField", "BigIntegerField", "BooleanField", "CharField", "DateTimeField",
    "ForeignKey", "IntegerField", "PositiveBigIntegerField", "PositiveIntegerField",
    "PositiveSmallIntegerField", "SmallIntegerField", "TextField",
}  # fmt: skip


def prepared_column(field: models.Field, values: Sequence[Any]) -> list[Any]:
    """One column's values as PostgreSQL gets them in a binary array."""
    kind = field.get_internal_type()
    if kind in BOUND_AS_IS:
        return list(values)
    if kind == "FloatField":
        return floats(values)
    return [field.get_db_prep_save(value, connection) for value in values]


def floats(values: Sequence[Any]) -> list[float | None]:
    """A binary array must hold one Python type: a latency of 3 ms may come as the int 3."""
    return [None if value is None else float(value) for value in values]


def update_rows(
    model: type[models.Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]
) -> int:
    """Set `fields` of each row, given as (pk, value, value, …); returns the rows given."""
    if not rows:
        return 0
    meta = model._meta
    pk = meta.pk
    columns = [meta.get_field(name) for name in fields]
    table = connection.ops.quote_name(meta.db_table)
    quote = connection.ops.quote_name
    with bound_cursor() as cursor:
        if connection.vendor == "postgresql":
            names = [pk.column] + [field.column for field in columns]
            types = [pk.rel_db_type(connection)] + [field.db_type(connection) for field in columns]
            arrays = [
                prepared_column(field, values)
                for field, values in zip([pk, *columns], zip(*rows, strict=True), strict=True)
            ]
            assignments = ", ".join(f"{quote(c)} = v.{quote(c)}" for c in names[1:])
            unnest = ", ".join(f"%b::{kind}[]" for kind in types)
            aliases = ", ".join(quote(c) for c in names)
            cursor.execute(
                f"UPDATE {table} AS t SET {assignments} FROM unnest({unnest}) "  # noqa: S608
                f"AS v({aliases}) WHERE t.{quote(pk.column)} = v.{quote(pk.column)}",
                arrays,
            )
        else:
            prepared = [
                [
                    field.get_db_prep_save(value, connection)
                    for field, value in zip([pk, *columns], row, strict=True)
                ]
                for row in rows
            ]
            assignments = ", ".join(f"{quote(field.column)} = %s" for field in columns)
            cursor.executemany(
                f"UPDATE {table} SET {assignments} WHERE {quote(pk.column)} = %s",  # noqa: S608
                [[*values[1:], values[0]] for values in prepared],
            )
    return len(rows)
