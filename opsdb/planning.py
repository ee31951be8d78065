"""Shared pieces of the scheduler's planning passes: their result and fast bulk inserts.

Every pass works on sets: a fixed number of bulk queries however many rows it handles.
"""

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.db import connection

from opsdb.models import DataLocation

log = logging.getLogger("opsdb.scheduler")


@dataclass(frozen=True)
class Location:
    id: int
    site_id: int
    site_name: str
    name: str
    location_type: str
    priority: int
    active: bool

    @property
    def label(self) -> str:
        return f"{self.site_name}:{self.name}"


@dataclass
class Locations:
    """Every storage location, read once per pass (one query)."""

    locations: dict[int, Location]

    @classmethod
    def load(cls) -> "Locations":
        rows = DataLocation.objects.values_list(
            "pk", "site_id", "site__name", "name", "location_type", "priority", "active"
        )
        return cls(locations={row[0]: Location(*row) for row in rows})

    def best_location(self, site_id: int, location_type: str) -> Location | None:
        """The site's active location of that type with the highest priority (then by name)."""
        found = [
            loc for loc in self.locations.values()
            if loc.site_id == site_id and loc.location_type == location_type and loc.active
        ]
        return min(found, key=lambda loc: (-loc.priority, loc.name), default=None)

    def site_name(self, site_id: int) -> str:
        names = {loc.site_id: loc.site_name for loc in self.locations.values()}
        return names.get(site_id, f"site #{site_id}")

    def label(self, location_id: int) -> str:
        loc = self.locations.get(location_id)
        return loc.label if loc else f"location #{location_id}"


@dataclass
class PassResult:
    """What one pass did (or, in a dry run, would do): a count and the lines an operator reads."""

    name: str
    count: int = 0
    lines: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        """Record and log one operator-readable line, prefixed with the pass name."""
        text = f"{self.name}: {line}"
        self.lines.append(text)
        log.info(text)


def counted(labels: Iterable[str]) -> str:
    """'a ×2, b ×1' for a list of labels, most frequent first (compact log lines)."""
    return ", ".join(f"{label} ×{n}" for label, n in Counter(labels).most_common())


def plural(n: int, word: str) -> str:
    """'1 bundle', '3 bundles'."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def human_bytes(size: int) -> str:
    """Sizes as operators say them (decimal units)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} PB"


def insert_int_rows(table: str, columns: Sequence[str], rows: Sequence[Sequence[int]]) -> None:
    """Insert rows of integers (link tables) in one statement, however many rows.

    PostgreSQL: one INSERT … SELECT FROM unnest(arrays), which is much faster than building a
    model instance per row (a bundling pass may add a million memberships). Elsewhere:
    executemany, one statement prepared once.
    """
    if not rows:
        return
    qn = connection.ops.quote_name
    cols = ", ".join(qn(c) for c in columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Each column as one array literal: quoting one string is far cheaper than adapting
            # a million Python ints one by one.
            arrays = ["{" + ",".join(map(str, col)) + "}" for col in zip(*rows, strict=True)]
            unnest = ", ".join(["%s::bigint[]"] * len(columns))
            cursor.execute(f"INSERT INTO {qn(table)} ({cols}) SELECT * FROM unnest({unnest})", arrays)
        else:
            marks = ", ".join(["%s"] * len(columns))
            cursor.executemany(f"INSERT INTO {qn(table)} ({cols}) VALUES ({marks})", [tuple(r) for r in rows])


def insert_from_select(model, selected: dict[str, str], from_sql: str, params: Sequence, *, now) -> int:
    """INSERT INTO model's table SELECT …, computed in the database; returns the rows inserted.

    ``selected`` maps columns to SQL expressions of the SELECT; every other column gets the
    model field's default (``created_at``/``updated_at``: ``now``). Rows that would break a
    unique constraint are skipped. Nothing is loaded into Python, so a pass that creates a
    million jobs stays one statement and a few megabytes.
    """
    qn = connection.ops.quote_name
    columns, expressions, defaults = list(selected), list(selected.values()), []
    for f in model._meta.concrete_fields:
        if f.primary_key or f.column in selected:
            continue
        value = now if f.name in ("created_at", "updated_at") else f.get_default()
        columns.append(f.column)
        expressions.append("%s")
        defaults.append(f.get_db_prep_save(value, connection))
    postgres = connection.vendor == "postgresql"
    sql = (
        f"INSERT {'' if postgres else 'OR IGNORE '}INTO {qn(model._meta.db_table)} "
        f"({', '.join(qn(c) for c in columns)}) SELECT {', '.join(expressions)} {from_sql}"
        f"{' ON CONFLICT DO NOTHING' if postgres else ''}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*defaults, *params])
        return cursor.rowcount
