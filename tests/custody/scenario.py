"""A small world for deletion tests: ccat ships to cologne and cornell, both archive."""

from dataclasses import dataclass, field

from django.utils import timezone

from opsdb.choices import DeletionPolicy, JobStatus
from opsdb.models import DataLocation, RawDataPackageCopy
from tests import factories as f
from tests.topology import SiteLocations, direct, site
from transfers.models import DataTransfer, DataTransferPackage, DataTransferUnpack

SUM = "ab" * 32


@dataclass
class World:
    ccat: SiteLocations
    cologne: SiteLocations
    cornell: SiteLocations
    packages: list = field(default_factory=list)
    bundle: DataTransferPackage | None = None
    transfers: dict = field(default_factory=dict)


def policy(location: DataLocation, value: str = DeletionPolicy.WHEN_SAFE, **fields) -> DataLocation:
    DataLocation.objects.filter(pk=location.pk).update(deletion_policy=value, **fields)
    location.refresh_from_db()
    return location


def set_status(obj, status: str) -> None:
    type(obj).objects.filter(pk=obj.pk).update(status=status)


def world(packages: int = 2, size: int = 1000) -> World:
    """Packages registered at ccat:buffer (WHEN_SAFE), bundled (built), routes to cologne and cornell."""
    w = World(ccat=site("ccat", archive=False), cologne=site("cologne"), cornell=site("cornell"))
    direct(w.ccat, w.cologne)
    direct(w.ccat, w.cornell)
    policy(w.ccat.buffer)
    w.bundle = f.DataTransferPackageFactory(origin_location=w.ccat.buffer, payload_size=size * packages)
    set_status(w.bundle, JobStatus.COMPLETED)
    f.DataTransferPackageCopyFactory(transfer_package=w.bundle, location=w.ccat.buffer, checksum_verified=SUM,
                                     verified_at=timezone.now())
    for _ in range(packages):
        copy = f.RawDataPackageCopyFactory(location=w.ccat.buffer, raw_package__size=size)
        f.DataTransferPackageMemberFactory(transfer_package=w.bundle, raw_package=copy.raw_package)
        w.packages.append(copy.raw_package)
    return w


def deliver(w: World, to: SiteLocations, *, archive: bool = True, unpack: str = JobStatus.UNPACKED) -> DataTransfer:
    """The bundle went to ``to``'s buffer (TRANSFERRED, unpacked), and its packages into its archive."""
    transfer = f.DataTransferFactory(transfer_package=w.bundle, origin_location=w.ccat.buffer,
                                     destination_location=to.buffer)
    set_status(transfer, JobStatus.TRANSFERRED)
    unpacked = DataTransferUnpack.objects.create(transfer=transfer)
    set_status(unpacked, unpack)
    w.transfers[to.site.name] = transfer
    for package in w.packages:
        f.RawDataPackageCopyFactory(raw_package=package, location=to.buffer, checksum_verified=package.checksum,
                                    verified_at=timezone.now())
        if archive:
            archived(package, to.archive)
    return transfer


def archived(package, location) -> RawDataPackageCopy:
    copy, _ = RawDataPackageCopy.objects.get_or_create(
        raw_package=package, location=location,
        defaults={"path": f"raw/{package.name}", "checksum_verified": package.checksum,
                  "verified_at": timezone.now()})
    return copy
