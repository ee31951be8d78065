"""Registering new raw data: a RawDataPackage with its observation, files and the copy of its archive."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction

from opsdb.choices import ChecksumAlgorithm
from opsdb.models import DataLocation, Instrument, Observation, RawDataFile, RawDataPackage, RawDataPackageCopy


class IngestConflict(Exception):
    """The request contradicts what is registered (same name, other checksum; other instrument)."""


@dataclass(frozen=True)
class ObservationInfo:
    obs_id: str
    instrument: str | None = None
    target_name: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None


def observation_for_ingest(info: ObservationInfo) -> Observation:
    """The observation ``obs_id``, created (with its instrument, by name) when new."""
    observation = Observation.objects.select_related("instrument").filter(obs_id=info.obs_id).first()
    if observation is None:
        instrument, _ = Instrument.objects.get_or_create(name=info.instrument)
        observation, _ = Observation.objects.get_or_create(
            obs_id=info.obs_id,
            defaults={"instrument": instrument, "target_name": info.target_name, "start_time": info.start_time,
                      "end_time": info.end_time},
        )
    if info.instrument and observation.instrument.name != info.instrument:
        raise IngestConflict(f"Observation {info.obs_id} is registered with instrument {observation.instrument}, "
                             f"not {info.instrument}.")
    return observation


@transaction.atomic
def raw_package_ingest(*, name: str, size: int, checksum: str, checksum_algorithm: str = ChecksumAlgorithm.SHA256,
                       observation: ObservationInfo, files: list[dict[str, Any]], location: DataLocation,
                       path: str) -> tuple[RawDataPackage, bool]:
    """Register a raw package, its files and its copy at ``location`` at once; (package, created).

    Idempotent: the same package again changes nothing but (re)records its copy at ``location``;
    the same name with another checksum or size raises IngestConflict.
    """
    package = RawDataPackage.objects.filter(name=name).first()
    created = False
    if package is None:
        try:
            with transaction.atomic():  # a concurrent ingest of the same name loses here, not with a 500
                package = _create(name, size, checksum, checksum_algorithm, observation, files)
                created = True
        except IntegrityError:
            package = RawDataPackage.objects.filter(name=name).first()
            if package is None:
                raise
    if not created and (package.checksum.lower() != checksum.lower() or package.size != size):
        raise IngestConflict(f"A package named {name} is already registered with another checksum or size "
                             f"({package.checksum}, {package.size} bytes).")
    RawDataPackageCopy.objects.get_or_create(raw_package=package, location=location, defaults={"path": path})
    return package, created


def _create(name, size, checksum, checksum_algorithm, observation_info, files) -> RawDataPackage:
    observation = observation_for_ingest(observation_info)
    package = RawDataPackage.objects.create(name=name, size=size, checksum=checksum,
                                            checksum_algorithm=checksum_algorithm, observation=observation)
    RawDataFile.objects.bulk_create(RawDataFile(package=package, **f) for f in files)
    return package
