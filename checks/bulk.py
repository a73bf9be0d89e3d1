"""Updating many rows with different values in one statement.

Django's bulk_update builds a `CASE WHEN id = … THEN …` per row and per field;
for the few hundred rows a probe batch or a dispatcher tick touches, building
that expression dominated the workers' CPU (bench/fleet.py profile). On
PostgreSQL this sends each column as one array and joins on `unnest`, so the
statement's text is the same whatever the batch size; SQLite (the embedded
default, small by design) runs one prepared UPDATE per row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.db import connection, models


@contextmanager
def bound_cursor() -> Iterator[Any]:
    """A cursor that sends parameters separately from the statement.

    Django's PostgreSQL cursors merge parameters into the SQL text on the
    client; for the hot path's statements of a thousand parameters that
    merging cost more CPU than PostgreSQL spent running them. This cursor
    shares Django's connection (and so its transaction), and database errors
    still arrive as Django's exceptions.
    """
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    import psycopg

    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        yield cursor


def update_rows(
    model: type[models.Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]
) -> int:
    """Set `fields` of each row, given as (pk, value, value, …); returns the rows given."""
    if not rows:
        return 0
    meta = model._meta
    pk = meta.pk
    columns = [meta.get_field(name) for name in fields]
    prepared = [
        [pk.get_db_prep_save(row[0], connection)]
        + [
            field.get_db_prep_save(value, connection)
            for field, value in zip(columns, row[1:], strict=True)
        ]
        for row in rows
    ]
    table = connection.ops.quote_name(meta.db_table)
    quote = connection.ops.quote_name
    with bound_cursor() as cursor:
        if connection.vendor == "postgresql":
            names = [pk.column] + [field.column for field in columns]
            types = [pk.rel_db_type(connection)] + [field.db_type(connection) for field in columns]
            arrays = [list(values) for values in zip(*prepared, strict=True)]
            assignments = ", ".join(f"{quote(c)} = v.{quote(c)}" for c in names[1:])
            unnest = ", ".join(f"%s::{kind}[]" for kind in types)
            aliases = ", ".join(quote(c) for c in names)
            cursor.execute(
                f"UPDATE {table} AS t SET {assignments} FROM unnest({unnest}) "  # noqa: S608
                f"AS v({aliases}) WHERE t.{quote(pk.column)} = v.{quote(pk.column)}",
                arrays,
            )
        else:
            assignments = ", ".join(f"{quote(field.column)} = %s" for field in columns)
            cursor.executemany(
                f"UPDATE {table} SET {assignments} WHERE {quote(pk.column)} = %s",  # noqa: S608
                [[*values[1:], values[0]] for values in prepared],
            )
    return len(rows)
