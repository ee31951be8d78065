"""A property-based run of the custody cycle: random registrations, deliveries, readers, audits,
deletion passes, workers that delete, fail or vanish, and operators' retries. After every step:

- no raw package is left without a verified PRESENT copy;
- no buffer copy is being deleted (or deleted) unless its package is safe at both required archives
  (checked when the worker takes it);
- no copy that an open job reads is being deleted.
"""

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from custody.models import DeletionJob
from custody.planning import plan_deletions
from opsdb.choices import CopyStatus, JobStatus
from opsdb.models import RawDataPackageCopy
from opsdb.registry import job_kinds
from opsdb.services import claim_for_worker, job_complete, job_expire, job_fail, job_retry
from tests import factories as f
from tests.custody.scenario import archived, world

pytestmark = pytest.mark.django_db
DELETING = (CopyStatus.DELETION_IN_PROGRESS, CopyStatus.DELETED)


class Custody(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.atomic = transaction.atomic()
        self.atomic.__enter__()
        self.w = world(packages=0)
        self.packages = []
        self.readers = []

    def teardown(self):
        transaction.set_rollback(True)
        self.atomic.__exit__(None, None, None)

    # --- the world -----------------------------------------------------------------------------
    @rule(archived_at_both=st.booleans())
    def register(self, archived_at_both):
        copy = f.RawDataPackageCopyFactory(location=self.w.ccat.buffer)
        RawDataPackageCopy.objects.filter(pk=copy.pk).update(checksum_verified=copy.raw_package.checksum,
                                                             verified_at=timezone.now())
        self.packages.append(copy.raw_package)
        if archived_at_both:  # it went through quickly
            archived(copy.raw_package, self.w.cologne.archive)
            archived(copy.raw_package, self.w.cornell.archive)

    @precondition(lambda self: self.packages)
    @rule(data=st.data(), where=st.sampled_from(["cologne", "cornell", "both"]))
    def archive(self, data, where):
        package = data.draw(st.sampled_from(self.packages))
        for site in (["cologne", "cornell"] if where == "both" else [where]):
            archived(package, getattr(self.w, site).archive)

    @precondition(lambda self: self.packages)
    @rule(data=st.data())
    def open_reader(self, data):
        """A staging job starts reading a buffer copy that is there (not already being removed)."""
        package = data.draw(st.sampled_from(self.packages))
        if package.copies.get(location=self.w.ccat.buffer).status in DELETING:
            return
        item = f.StagingJobPackageFactory(raw_package=package, source_location=self.w.ccat.buffer)
        self.readers.append(item.job)

    @precondition(lambda self: self.readers)
    @rule()
    def close_reader(self):
        job = self.readers.pop(0)
        type(job).objects.filter(pk=job.pk).update(status=JobStatus.READY)

    @precondition(lambda self: self.packages)
    @rule(data=st.data())
    def audit_finds_rot(self, data):
        """An archive copy turns out bad, only while the package keeps another verified copy (rot is rare)."""
        package = data.draw(st.sampled_from(self.packages))
        copies = list(package.copies.verified().filter(location__location_type="LONG_TERM_ARCHIVE"))
        if copies and package.copies.verified().count() > 1:
            RawDataPackageCopy.objects.filter(pk=copies[0].pk).update(status=CopyStatus.MISMATCH)

    @precondition(lambda self: self.packages)
    @rule(data=st.data())
    def repair(self, data):
        package = data.draw(st.sampled_from(self.packages))
        package.copies.filter(status=CopyStatus.MISMATCH).update(status=CopyStatus.PRESENT)

    # --- the scheduler and the workers -------------------------------------------------------
    @rule()
    def plan(self):
        plan_deletions(now=timezone.now())

    def _claim(self):
        plan_deletions(now=timezone.now())  # a scheduler runs between the workers' claims
        DeletionJob.objects.filter(status=JobStatus.PENDING).update(next_attempt_at=None)
        claimed = claim_for_worker(handlers=[job_kinds["delete"]], worker="w1")
        if claimed is None:
            return None, None
        handler, job = claimed
        for item in job.items.filter(outcome="WAITING", raw_package_copy__isnull=False):
            package = item.raw_package_copy.raw_package
            safe = package.copies.filter(location__location_type="LONG_TERM_ARCHIVE", status=CopyStatus.PRESENT)
            assert safe.count() == 2, f"{item.raw_package_copy} taken while its package is not safe"
        return handler, job

    @rule(outcome=st.sampled_from(["deleted", "gone", "failed"]))
    def worker_reports(self, outcome):
        handler, job = self._claim()
        if job is not None:
            copies = [{"id": c["id"], "outcome": outcome, "error": "EIO"} for c in handler.payload(job)["copies"]]
            job_complete(job=job, lease_token=job.lease_token,
                         apply=lambda j: handler.apply_result(j, {"copies": copies}))

    @rule(retryable=st.booleans())
    def worker_fails(self, retryable):
        _, job = self._claim()
        if job is not None:
            job_fail(job=job, lease_token=job.lease_token, error="storage offline", retryable=retryable)

    @rule()
    def worker_vanishes(self):
        _, job = self._claim()
        if job is not None:
            DeletionJob.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timezone.timedelta(1))
            job_expire(job=DeletionJob.objects.get(pk=job.pk))

    @rule()
    def operator_retries(self):
        for job in DeletionJob.objects.filter(status=JobStatus.FAILED):
            job_retry(job=job)

    # --- what must always hold ---------------------------------------------------------------
    @invariant()
    def every_package_keeps_a_verified_copy(self):
        for package in self.packages:
            assert package.copies.verified().exists(), f"{package} has no verified PRESENT copy"

    @invariant()
    def nothing_an_open_job_reads_is_deleted(self):
        for job in self.readers:
            for item in job.items.all():
                copy = RawDataPackageCopy.objects.get(raw_package=item.raw_package, location=item.source_location)
                assert copy.status not in DELETING, f"{copy} deleted while {job} reads it"


def test_custody_cycle_keeps_its_promises():
    run_state_machine_as_test(Custody, settings=settings(
        max_examples=30, stateful_step_count=40, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
