"""The physical copies' lifecycle: transitions (recorded), the bulk variant, and the last-copy guard."""

import threading
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django_fsm import ConcurrentTransition, TransitionNotAllowed
from django_fsm_log.models import StateLog

from opsdb.choices import CopyStatus, LocationType
from opsdb.copies import LastCopyProtected, copies_transition, copy_transition
from opsdb.models import RawDataPackageCopy
from opsdb.work import record_copies
from tests import factories as f
from transfers.models import DataTransferPackageCopy

pytestmark = pytest.mark.django_db

S = CopyStatus
ALLOWED = [
    ("schedule_deletion", S.PRESENT, S.DELETION_SCHEDULED),
    ("start_deletion", S.DELETION_SCHEDULED, S.DELETION_IN_PROGRESS),
    ("mark_deleted", S.DELETION_IN_PROGRESS, S.DELETED),
    ("release_deletion", S.DELETION_IN_PROGRESS, S.DELETION_SCHEDULED),
    ("fail_deletion", S.DELETION_IN_PROGRESS, S.DELETION_FAILED),
    ("retry_deletion", S.DELETION_FAILED, S.DELETION_SCHEDULED),
    ("keep", S.DELETION_SCHEDULED, S.PRESENT),
    ("keep", S.DELETION_FAILED, S.PRESENT),
    ("mark_mismatch", S.PRESENT, S.MISMATCH),
    ("mark_mismatch", S.MISSING, S.MISMATCH),
    ("mark_missing", S.PRESENT, S.MISSING),
    ("mark_missing", S.MISMATCH, S.MISSING),
    ("restore", S.MISMATCH, S.PRESENT),
    ("restore", S.MISSING, S.PRESENT),
    ("restore", S.DELETED, S.PRESENT),
    ("restore", S.DELETION_FAILED, S.PRESENT),
]
REFUSED = [
    ("schedule_deletion", S.DELETED),
    ("schedule_deletion", S.MISMATCH),
    ("start_deletion", S.PRESENT),
    ("mark_deleted", S.PRESENT),
    ("mark_deleted", S.DELETION_SCHEDULED),
    ("retry_deletion", S.PRESENT),
    ("keep", S.DELETION_IN_PROGRESS),
    ("mark_mismatch", S.DELETED),
    ("restore", S.PRESENT),
    ("restore", S.DELETION_IN_PROGRESS),
]


def verified_copy(raw_package=None, **kwargs) -> RawDataPackageCopy:
    kwargs.setdefault("checksum_verified", "ab" * 32)
    kwargs.setdefault("verified_at", timezone.now())
    if raw_package is not None:
        kwargs["raw_package"] = raw_package
    return f.RawDataPackageCopyFactory(**kwargs)


def package_with_two_copies() -> tuple[RawDataPackageCopy, RawDataPackageCopy]:
    """A buffer copy and a verified archive copy of one package."""
    buffer = f.RawDataPackageCopyFactory(location__location_type=LocationType.BUFFER)
    archive = verified_copy(buffer.raw_package, location__location_type=LocationType.LONG_TERM_ARCHIVE)
    return buffer, archive


@pytest.mark.parametrize(("name", "source", "target"), ALLOWED)
def test_copy_transition_allowed_is_recorded(name, source, target):
    buffer, _ = package_with_two_copies()
    RawDataPackageCopy.objects.filter(pk=buffer.pk).update(status=source)
    operator = f.UserFactory(username="op")

    moved = copy_transition(copy=buffer, transition=name, by=operator, description="because")

    buffer.refresh_from_db()
    log = StateLog.objects.for_(buffer).get()
    assert (moved.status, buffer.status) == (target, target)
    assert (log.transition, log.source_state, log.state, log.by, log.description) == (
        name, source, target, operator, "because")


@pytest.mark.parametrize(("name", "source"), REFUSED)
def test_copy_transition_refused_changes_nothing(name, source):
    buffer, _ = package_with_two_copies()
    RawDataPackageCopy.objects.filter(pk=buffer.pk).update(status=source)

    with pytest.raises(TransitionNotAllowed):
        copy_transition(copy=buffer, transition=name)

    buffer.refresh_from_db()
    assert (buffer.status, StateLog.objects.count()) == (source, 0)


def test_copy_transition_on_a_transfer_package_copy():
    copy = f.DataTransferPackageCopyFactory()

    copy_transition(copy=copy, transition="schedule_deletion")

    copy.refresh_from_db()
    assert copy.status == S.DELETION_SCHEDULED


def test_copy_status_cannot_be_assigned():
    copy = f.RawDataPackageCopyFactory()

    with pytest.raises(AttributeError):
        copy.status = S.DELETED


def test_copy_transition_stale_instance_raises_concurrent_transition():
    buffer, _ = package_with_two_copies()
    stale = RawDataPackageCopy.objects.get(pk=buffer.pk)
    copy_transition(copy=buffer, transition="schedule_deletion")

    stale.mark_missing()
    with pytest.raises(ConcurrentTransition):
        stale.save()


def test_copies_transition_moves_only_allowed_sources_and_logs_each(django_assert_max_num_queries):
    copies = [package_with_two_copies()[0] for _ in range(4)]
    RawDataPackageCopy.objects.filter(pk=copies[3].pk).update(status=S.DELETED)
    ids = [c.pk for c in copies]

    with django_assert_max_num_queries(4):
        moved = copies_transition(RawDataPackageCopy.objects.filter(pk__in=ids), "schedule_deletion",
                                  description="archived at both sites")

    statuses = dict(RawDataPackageCopy.objects.filter(pk__in=ids).values_list("pk", "status"))
    logs = StateLog.objects.filter(transition="schedule_deletion").values_list("object_id", "source_state",
                                                                                 "state", "description")
    assert moved == 3
    assert statuses == {ids[0]: S.DELETION_SCHEDULED, ids[1]: S.DELETION_SCHEDULED, ids[2]: S.DELETION_SCHEDULED,
                        ids[3]: S.DELETED}
    assert sorted(logs) == [(pk, S.PRESENT, S.DELETION_SCHEDULED, "archived at both sites") for pk in ids[:3]]


def test_copies_transition_queries_do_not_grow(django_assert_max_num_queries):
    for _ in range(30):
        package_with_two_copies()

    with django_assert_max_num_queries(4):
        moved = copies_transition(RawDataPackageCopy.objects.filter(location__location_type=LocationType.BUFFER),
                                  "schedule_deletion")

    assert moved == 30


def test_copies_transition_takes_a_sliced_queryset():
    copies = [package_with_two_copies()[0] for _ in range(3)]

    moved = copies_transition(RawDataPackageCopy.objects.filter(pk__in=[c.pk for c in copies]).order_by("pk")[:2],
                              "schedule_deletion")

    assert moved == 2
    assert list(RawDataPackageCopy.objects.filter(status=S.DELETION_SCHEDULED).values_list("pk", flat=True)
                .order_by("pk")) == [copies[0].pk, copies[1].pk]


# --- the database-level guard: never the last verified PRESENT copy of a raw package ---------------

def test_guard_refuses_raw_update_of_last_verified_copy():
    buffer, archive = package_with_two_copies()
    RawDataPackageCopy.objects.filter(pk=buffer.pk).update(status=S.DELETED)

    with pytest.raises(IntegrityError, match="last verified PRESENT copy"), transaction.atomic():
        RawDataPackageCopy.objects.filter(pk=archive.pk).update(status=S.DELETED)

    archive.refresh_from_db()
    assert archive.status == S.PRESENT


def test_guard_refuses_in_progress_for_last_verified_copy():
    copy = verified_copy()
    RawDataPackageCopy.objects.filter(pk=copy.pk).update(status=S.DELETION_SCHEDULED)

    with pytest.raises(LastCopyProtected):
        copy_transition(copy=copy, transition="start_deletion")

    copy.refresh_from_db()
    assert (copy.status, StateLog.objects.count()) == (S.DELETION_SCHEDULED, 0)


def test_guard_allows_deletion_while_another_verified_copy_is_present():
    buffer, _ = package_with_two_copies()
    copy_transition(copy=buffer, transition="schedule_deletion")
    copy_transition(copy=buffer, transition="start_deletion")

    copy_transition(copy=buffer, transition="mark_deleted")

    buffer.refresh_from_db()
    assert buffer.status == S.DELETED


@pytest.mark.parametrize("other", [
    {"status": S.PRESENT, "checksum_verified": ""},  # never verified
    {"status": S.PRESENT, "verified_at": None},
    {"status": S.MISMATCH},
    {"status": S.MISSING},
    {"status": S.DELETION_SCHEDULED},
])
def test_guard_counts_only_verified_present_copies(other):
    buffer, archive = package_with_two_copies()
    RawDataPackageCopy.objects.filter(pk=archive.pk).update(**other)
    RawDataPackageCopy.objects.filter(pk=buffer.pk).update(status=S.DELETION_SCHEDULED)

    with pytest.raises(LastCopyProtected):
        copy_transition(copy=buffer, transition="start_deletion")


def test_guard_refuses_the_second_of_two_copies_in_one_bulk_update():
    first = verified_copy()
    second = verified_copy(first.raw_package)
    both = RawDataPackageCopy.objects.filter(pk__in=[first.pk, second.pk])
    both.update(status=S.DELETION_SCHEDULED)

    with pytest.raises(LastCopyProtected):
        copies_transition(both, "start_deletion")

    assert set(both.values_list("status", flat=True)) == {S.DELETION_SCHEDULED}
    assert StateLog.objects.count() == 0


def test_guard_does_not_apply_to_transfer_package_copies():
    copy = f.DataTransferPackageCopyFactory()
    DataTransferPackageCopy.objects.filter(pk=copy.pk).update(status=S.DELETION_IN_PROGRESS)

    copy_transition(copy=copy, transition="mark_deleted")

    copy.refresh_from_db()
    assert copy.status == S.DELETED


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_guard_serialises_two_transactions_deleting_two_copies_of_one_package():
    """Each sees the other copy PRESENT in its own snapshot; the package-row lock makes the second see the first."""
    first = verified_copy()
    second = verified_copy(first.raw_package)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def delete(copy):
        try:
            with transaction.atomic():
                barrier.wait(timeout=10)
                RawDataPackageCopy.objects.filter(pk=copy.pk).update(status=S.DELETION_IN_PROGRESS)
                barrier_hold()
            outcomes.append("moved")
        except IntegrityError:
            outcomes.append("refused")
        finally:
            connection.close()

    def barrier_hold():
        threading.Event().wait(0.3)  # keep the first transaction open while the second tries

    threads = [threading.Thread(target=delete, args=(c,)) for c in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["moved", "refused"]
    assert RawDataPackageCopy.objects.filter(status=S.DELETION_IN_PROGRESS).count() == 1


# --- recording a copy again ---------------------------------------------------------------------

def test_record_copies_restores_a_deleted_copy_and_logs_it():
    buffer, _ = package_with_two_copies()
    RawDataPackageCopy.objects.filter(pk=buffer.pk).update(status=S.DELETED)

    record_copies(RawDataPackageCopy, of="raw_package", location=buffer.location,
                  entries=[(buffer.raw_package, "raw/again.tar", "cd" * 32)])

    buffer.refresh_from_db()
    log = StateLog.objects.for_(buffer).get()
    assert (buffer.status, buffer.path, log.transition, log.source_state) == (
        S.PRESENT, "raw/again.tar", "restore", S.DELETED)


def test_record_copies_leaves_a_copy_being_deleted_to_its_deletion():
    buffer, _ = package_with_two_copies()
    RawDataPackageCopy.objects.filter(pk=buffer.pk).update(status=S.DELETION_IN_PROGRESS)

    record_copies(RawDataPackageCopy, of="raw_package", location=buffer.location,
                  entries=[(buffer.raw_package, "raw/again.tar", "cd" * 32)])

    buffer.refresh_from_db()
    assert (buffer.status, StateLog.objects.count()) == (S.DELETION_IN_PROGRESS, 0)


def test_verified_queryset_counts_only_present_copies_with_a_checksum():
    package = f.RawDataPackageFactory()
    good = verified_copy(package)
    verified_copy(package, status=S.MISMATCH)
    f.RawDataPackageCopyFactory(raw_package=package)
    verified_copy(package, verified_at=timezone.now() - timedelta(days=1), status=S.DELETED)

    assert list(package.copies.verified()) == [good]
