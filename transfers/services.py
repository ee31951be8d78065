"""Services of transfer packages (bundles) beyond the leased-job life cycle of ``opsdb.services``."""

from pathlib import PurePosixPath

from django.db import transaction

from opsdb.choices import JobStatus
from transfers.models import DataTransferPackage, DataTransferPackageMember


@transaction.atomic
def transfer_package_split(*, transfer_package: DataTransferPackage,
                           reason: str = "") -> tuple[DataTransferPackage, DataTransferPackage] | None:
    """A FAILED bundle of several raw packages → two new PENDING bundles of half its members; it is CANCELLED.

    A raw package is bundled once, so a bundle that failed for good because of one bad member
    would hold its good members for ever. Halving it on each such failure isolates the bad member
    in log2(n) rounds (a bundle of one stays FAILED for an operator) while the others go on.
    ``transfer_package`` must be locked by the caller's transaction (the fail report's); None when
    it is not FAILED or has a single member.
    """
    members = list(transfer_package.members.select_related("raw_package").order_by("raw_package__name"))
    if transfer_package.status != JobStatus.FAILED or len(members) < 2:
        return None
    half = len(members) // 2
    halves = tuple(_bundle_of(transfer_package, part, suffix)
                   for part, suffix in ((members[:half], "a"), (members[half:], "b")))
    names = " and ".join(h.name for h in halves)
    transfer_package.cancel(description=f"split into {names}: {reason}"[:500])
    transfer_package.save()
    from opsdb.services import write_job_log

    write_job_log(job=transfer_package, message=f"split into {names} after a failure in its content: {reason}",
                  worker=transfer_package.lease_holder)
    return halves


def _bundle_of(parent: DataTransferPackage, members: list[DataTransferPackageMember],
               suffix: str) -> DataTransferPackage:
    """A new bundle like ``parent`` (origin, target, priority) holding ``members``, moved out of it."""
    name = f"{parent.name.removesuffix('.tar')}-{suffix}.tar"
    bundle = DataTransferPackage.objects.create(
        name=name, origin_location_id=parent.origin_location_id, priority=parent.priority,
        archive_path=str(PurePosixPath(parent.archive_path).with_name(name)),
        payload_size=sum(m.raw_package.size for m in members), target_size=parent.target_size,
        checksum_algorithm=parent.checksum_algorithm,
    )
    DataTransferPackageMember.objects.filter(pk__in=[m.pk for m in members]).update(transfer_package=bundle)
    return bundle
