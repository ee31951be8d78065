"""django-fsm-log's storage, with one insert for the state logs of many transitions.

Every transition is recorded by django-fsm-log (a ``StateLog`` row: who, when, from, to, why).
Its simple backend writes one row per transition as the transition happens. This backend does
the same (with an INSERT made once, ``opsdb.prepared.insert_rows``, rather than ``Model.save``),
except inside ``state_logs_in_bulk()``: there the rows are collected and written in one INSERT
when the block ends without an error — so a batch of claims or reports stays a fixed number of
statements, and still goes through the real transitions.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django_fsm_log.backends import SimpleBackend, _pre_transition_callback
from django_fsm_log.models import StateLog

from opsdb.prepared import insert_rows

_collected: ContextVar[list | None] = ContextVar("state_logs_collected", default=None)


class _Collector:
    """Stands in for ``StateLog.objects`` in django-fsm-log's callback: builds rows, saves none."""

    def __init__(self, rows: list) -> None:
        self.rows = rows

    def create(self, **values) -> None:
        self.rows.append(StateLog(**values))


class BatchingBackend(SimpleBackend):
    """``SimpleBackend``, but collecting the rows while ``state_logs_in_bulk()`` is active."""

    @staticmethod
    def post_transition_callback(sender, instance, name, source, target, **kwargs):
        rows = _collected.get()
        if rows is None:  # one row now, its INSERT made once (opsdb.prepared), not compiled by Model.save
            one: list = []
            _pre_transition_callback(sender, instance, name, source, target, _Collector(one), **kwargs)
            insert_rows(one)
            return None
        return _pre_transition_callback(sender, instance, name, source, target, _Collector(rows), **kwargs)


def collecting() -> bool:
    """Whether a ``state_logs_in_bulk()`` block is active (it inserts the state logs of transitions now)."""
    return _collected.get() is not None


@contextmanager
def state_logs_in_bulk() -> Iterator[list]:
    """Collect the state logs of the transitions in this block; insert them in one statement at its end.

    The caller saves the transitioned rows itself (in bulk) before the block ends, in the same
    transaction. On an error nothing is inserted: the transaction is rolled back anyway. A caller
    that writes the rows itself (with the job's UPDATE: ``opsdb.services.transition_and_save``)
    empties the list.
    """
    if _collected.get() is not None:
        raise RuntimeError("state_logs_in_bulk() blocks do not nest")
    rows: list = []
    token = _collected.set(rows)
    try:
        yield rows
    finally:
        _collected.reset(token)
    insert_rows(rows)
