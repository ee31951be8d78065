"""The physical copies' lifecycle: the services that move a copy's status, one copy or a whole set.

Every change goes through a transition of ``opsdb.models.PhysicalCopy`` and leaves a django-fsm-log
``StateLog`` row (who, when, from, to, why). ``copy_transition`` drives one copy under a row lock;
``copies_transition`` moves every copy of a queryset that the same transition allows, in a fixed
number of statements however many rows (the scheduler's passes work on sets).

The database refuses, whatever the code path, to move the last verified PRESENT copy of a raw data
package into DELETION_IN_PROGRESS or DELETED (a trigger, ``opsdb/migration_ops.py`` ``last_copy_guard``);
both services turn that refusal into ``LastCopyProtected``.
"""

from datetime import datetime

from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django_fsm_log.models import StateLog

from opsdb.choices import CopyStatus
from opsdb.migration_ops import LAST_COPY_MESSAGE  # the trigger's message: the refusal is recognised by it
from opsdb.models import PhysicalCopy


class LastCopyProtected(Exception):
    """The database refused to delete the last verified PRESENT copy of a raw data package."""


def transition_of(model: type[PhysicalCopy], name: str) -> tuple[list[str], str]:
    """The source states and the target state of the copy transition ``name`` (as the model declares it)."""
    meta = getattr(model, name)._django_fsm
    targets = {t.target for t in meta.transitions.values()}
    if len(targets) != 1:
        raise ValueError(f"{name} has no single target state")
    return list(meta.transitions), targets.pop()


def is_last_copy_refusal(exc: BaseException) -> bool:
    return LAST_COPY_MESSAGE in str(exc)


@transaction.atomic
def copy_transition(*, copy: PhysicalCopy, transition: str, by=None, description: str = "",
                    **fields) -> PhysicalCopy:
    """Move one copy by ``transition`` under a row lock, setting ``fields`` with it; returns the saved copy.

    Raises ``django_fsm.TransitionNotAllowed`` when its current status does not allow it and
    ``LastCopyProtected`` when it would delete a package's last verified copy (nothing changed).
    """
    locked = type(copy).objects.select_for_update().get(pk=copy.pk)
    getattr(locked, transition)(by=by, description=description or None)
    for name, value in fields.items():
        setattr(locked, name, value)
    try:
        with transaction.atomic():
            locked.save()
    except IntegrityError as exc:
        if is_last_copy_refusal(exc):
            raise LastCopyProtected(f"{copy}: {LAST_COPY_MESSAGE}") from exc
        raise
    return locked


# What a transition changes besides the status, for the bulk variant (mirrors the transition methods).
BULK_SIDE_EFFECTS = {
    "release_deletion": "deletion_failures = deletion_failures + 1",
    "fail_deletion": "deletion_failures = deletion_failures + 1",
    "retry_deletion": "deletion_failures = 0",
    "keep": "deletion_failures = 0",
}


def copies_transition(queryset: QuerySet, transition: str, *, description: str = "", by=None,
                      now: datetime | None = None) -> int:
    """Move every copy of ``queryset`` whose status allows ``transition``; one StateLog row each. Returns the count.

    Two statements on SQLite (its writers are serialised), one on PostgreSQL (a locking read, the
    update and the log insert in one statement, so a copy another transaction moved meanwhile is
    neither moved nor logged). ``queryset`` may be sliced (``[:n]``, e.g. the oldest first).
    Raises ``LastCopyProtected`` (and changes nothing) if any copy is a package's last verified one.
    """
    model = queryset.model
    sources, target = transition_of(model, transition)
    now = now or timezone.now()
    ids_sql, ids_params = queryset.values("pk").query.sql_with_params()
    table = connection.ops.quote_name(model._meta.db_table)
    log_table = connection.ops.quote_name(StateLog._meta.db_table)
    content_type = ContentType.objects.get_for_model(model)
    marks = ", ".join(["%s"] * len(sources))
    log_values = [now, getattr(by, "pk", None), target, transition, content_type.pk, description or None]
    columns = "timestamp, by_id, source_state, state, transition, content_type_id, object_id, description"
    also = f", {BULK_SIDE_EFFECTS[transition]}" if transition in BULK_SIDE_EFFECTS else ""
    try:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                return _pg_transition(table, log_table, columns, marks, ids_sql, [*ids_params, *sources],
                                      target, now, log_values, also)
            return _sqlite_transition(table, log_table, columns, marks, ids_sql, [*ids_params, *sources],
                                      target, now, log_values, also)
    except IntegrityError as exc:
        if is_last_copy_refusal(exc):
            raise LastCopyProtected(LAST_COPY_MESSAGE) from exc
        raise


def _pg_transition(table, log_table, columns, marks, ids_sql, pick_params, target, now, log_values, also) -> int:
    sources = pick_params[len(pick_params) - marks.count("%s"):]
    if len(sources) == 1:
        # One source state: the UPDATE's own row locks and re-check suffice, and RETURNING says which rows moved.
        sql = (
            f"WITH changed AS (UPDATE {table} SET status = %s, updated_at = %s{also} "
            f"WHERE id IN ({ids_sql}) AND status IN ({marks}) RETURNING id) "
            f"INSERT INTO {log_table} ({columns}) SELECT %s, %s, %s, %s, %s, %s, id, %s FROM changed"
        )
        params = [target, now, *pick_params, log_values[0], log_values[1], sources[0], *log_values[2:]]
    else:
        sql = (
            f"WITH picked AS (SELECT id, status FROM {table} WHERE id IN ({ids_sql}) AND status IN ({marks}) "
            f"ORDER BY id FOR UPDATE), "
            f"changed AS (UPDATE {table} AS c SET status = %s, updated_at = %s{also} FROM picked "
            f"WHERE c.id = picked.id RETURNING c.id, picked.status AS source) "
            f"INSERT INTO {log_table} ({columns}) SELECT %s, %s, source, %s, %s, %s, id, %s FROM changed"
        )
        params = [*pick_params, target, now, *log_values]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")  # compiling the plan costs more than it saves here
        cursor.execute(sql, params)
        return cursor.rowcount


def _sqlite_transition(table, log_table, columns, marks, ids_sql, pick_params, target, now, log_values,
                       also) -> int:
    where = f"id IN ({ids_sql}) AND status IN ({marks})"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {log_table} ({columns}) SELECT %s, %s, status, %s, %s, %s, id, %s FROM {table} "
            f"WHERE {where}",
            [*log_values, *pick_params],
        )
        cursor.execute(f"UPDATE {table} SET status = %s, updated_at = %s{also} WHERE {where}",
                       [target, now, *pick_params])
        return cursor.rowcount


def restore_logs(model: type[PhysicalCopy], previous: dict[int, str], *, description: str,
                 now: datetime | None = None) -> None:
    """StateLog rows (transition ``restore``) for copies that were recorded PRESENT again; one insert, if any.

    ``previous`` maps a copy's id to the status it had before (PRESENT ones are skipped).
    """
    restored = {pk: status for pk, status in previous.items() if status != CopyStatus.PRESENT}
    if not restored:
        return
    content_type = ContentType.objects.get_for_model(model)
    StateLog.objects.bulk_create([
        StateLog(timestamp=now or timezone.now(), source_state=status, state=CopyStatus.PRESENT,
                 transition="restore", content_type=content_type, object_id=pk, description=description)
        for pk, status in restored.items()
    ])
