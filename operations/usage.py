"""Bytes present at each location, kept up to date by counting changes instead of summing the copy tables.

The copy tables grow with every year of history (an archive's copies are never deleted), so a sum over
them grows too: 3.6 s at 10^6 raw packages. Database triggers (migration
``operations/0003_location_usage``) append a :class:`LocationUsageChange` in the transaction of every
change of what is PRESENT where; :func:`fold_changes` adds them to the totals, reading only the changes
since the last tick. :func:`recount` counts everything again, for after statements that skipped the
triggers (``session_replication_role = replica``: bulk loads by hand or by the benchmarks).
"""

from collections import defaultdict

from django.db import connection, transaction
from django.db.models import Sum

from operations.models import LocationUsage, LocationUsageChange
from opsdb.models import DataLocation, RawDataFileCopy, RawDataPackageCopy
from transfers.models import DataTransferPackageCopy

# Copy models and the path to the size of what each holds.
SOURCES = (
    (RawDataPackageCopy, "raw_package__size"),
    (DataTransferPackageCopy, "transfer_package__size"),
    (RawDataFileCopy, "raw_file__size"),
)


def fold_changes() -> dict[int, int]:
    """Add the changes appended since the last fold to the totals; every location's used bytes (three queries).

    The changes are deleted and returned by one statement, so a change committed meanwhile is left for
    the next fold, never lost. Only the scheduler's history pass (its leader) folds.
    """
    table, locations = LocationUsageChange._meta.db_table, DataLocation._meta.db_table
    with connection.cursor() as cursor:
        # A change whose location is gone (deleted, or its table emptied first) is dropped with it.
        cursor.execute(f"DELETE FROM {table} RETURNING location_id, bytes, "  # noqa: S608 (table names)
                       f"EXISTS (SELECT 1 FROM {locations} WHERE {locations}.id = {table}.location_id)")
        rows = cursor.fetchall()
    used = dict(LocationUsage.objects.values_list("location_id", "used_bytes"))
    added: dict[int, int] = defaultdict(int)
    for location_id, delta, exists in rows:
        if exists:
            added[location_id] += delta
    added = {location_id: delta for location_id, delta in added.items() if delta}
    if added:
        for location_id, delta in added.items():
            used[location_id] = used.get(location_id, 0) + delta
        LocationUsage.objects.bulk_create(
            [LocationUsage(location_id=location_id, used_bytes=used[location_id]) for location_id in added],
            update_conflicts=True, unique_fields=["location"], update_fields=["used_bytes"])
    return used


def location_used_bytes() -> dict[int, int]:
    """Bytes present at each location, summed over the copy tables (three queries, each over a whole table)."""
    used: dict[int, int] = defaultdict(int)
    for model, size in SOURCES:
        rows = model.objects.present().values("location_id").annotate(total=Sum(size)).order_by()
        for row in rows:
            used[row["location_id"]] += row["total"] or 0
    return dict(used)


def recount() -> dict[int, int]:
    """Count every location's used bytes again from the copy tables and start the totals from there.

    On PostgreSQL the copy tables are locked against writes meanwhile (readers go on), so that no
    change is both in the count and still waiting to be folded.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            tables = ", ".join(model._meta.db_table for model, _ in SOURCES)
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {tables} IN SHARE MODE")
        LocationUsageChange.objects.all().delete()
        used = location_used_bytes()
        LocationUsage.objects.bulk_create(
            [LocationUsage(location_id=pk, used_bytes=used.get(pk, 0))
             for pk in DataLocation.objects.values_list("pk", flat=True)],
            update_conflicts=True, unique_fields=["location"], update_fields=["used_bytes"])
    return used
