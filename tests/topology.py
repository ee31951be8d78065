"""Helpers for scheduler tests: sites with their locations, waiting data, and jobs done through the services."""

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from opsdb.choices import LocationType, TransferMethod
from opsdb.services import job_claim, job_complete
from tests import factories as f
from transfers.choices import RouteType
from transfers.models import DataTransferPackageCopy

GB = 10**9


@dataclass
class SiteLocations:
    site: object
    buffer: object
    archive: object | None = None
    processing: object | None = None


def site(name: str, *, archive: bool = True, processing: bool = False) -> SiteLocations:
    """A site with a buffer, and optionally a long-term archive and a processing area."""
    s = f.SiteFactory(name=name)
    return SiteLocations(
        site=s,
        buffer=f.DataLocationFactory(site=s, name="buffer", location_type=LocationType.BUFFER),
        archive=f.DataLocationFactory(site=s, name="archive", location_type=LocationType.LONG_TERM_ARCHIVE)
        if archive else None,
        processing=f.DataLocationFactory(site=s, name="processing", location_type=LocationType.PROCESSING)
        if processing else None,
    )


def direct(origin: SiteLocations, destination: SiteLocations, **kwargs):
    return f.RouteFactory(origin_site=origin.site, destination_site=destination.site, **kwargs)


def relay(origin: SiteLocations, via: SiteLocations, destination: SiteLocations, **kwargs):
    return f.RouteFactory(origin_site=origin.site, destination_site=destination.site, relay_site=via.site,
                          route_type=RouteType.RELAY, **kwargs)


def custom(origin_location, destination_location, **kwargs):
    kwargs.setdefault("method", TransferMethod.RSYNC)
    return f.RouteFactory(
        origin_site=origin_location.site, destination_site=destination_location.site, route_type=RouteType.CUSTOM,
        origin_location=origin_location, destination_location=destination_location, **kwargs,
    )


def waiting(location, *, size: int = 5 * GB, age: timedelta = timedelta(0), now=None):
    """A raw package PRESENT at ``location`` since ``age`` ago."""
    copy = f.RawDataPackageCopyFactory(raw_package__size=size, location=location)
    copy.created_at = (now or timezone.now()) - age
    copy.save(update_fields=["created_at"])
    return copy.raw_package


def build(bundle, worker: str = "builder"):
    """A worker builds the bundle's archive: COMPLETED, with its copy at the origin."""
    job = job_claim(job=bundle, worker=worker)

    def apply(job):
        DataTransferPackageCopy.objects.create(transfer_package=job, location=job.origin_location,
                                               path=job.archive_path)

    job, _ = job_complete(job=job, lease_token=job.lease_token, apply=apply)
    return job


def arrive(transfer, worker: str = "mover"):
    """A worker moves the bundle: TRANSFERRED, with its copy at the destination."""
    job = job_claim(job=transfer, worker=worker)

    def apply(job):
        DataTransferPackageCopy.objects.create(transfer_package=job.transfer_package,
                                               location=job.destination_location,
                                               path=job.transfer_package.archive_path)

    job, _ = job_complete(job=job, lease_token=job.lease_token, apply=apply)
    return job


def finish(job, worker: str = "worker", apply=None):
    """Claim and complete any job through the services."""
    job = job_claim(job=job, worker=worker)
    job, _ = job_complete(job=job, lease_token=job.lease_token, apply=apply)
    return job
