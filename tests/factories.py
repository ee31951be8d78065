"""factory_boy factories for every model; build a consistent topology with the fewest arguments."""

from datetime import timedelta

import factory
from django.contrib.auth.models import Group, User
from django.utils import timezone

from opsdb.choices import CopyStatus, LocationType, StorageType, TransferMethod
from opsdb.models import (
    DataLocation,
    DataTransferLog,
    Instrument,
    Observation,
    RawDataFile,
    RawDataFileCopy,
    RawDataPackage,
    RawDataPackageCopy,
    Site,
)
from staging.models import LongTermArchiveTransfer, StagingJob, StagingJobPackage
from transfers.choices import RouteType
from transfers.models import (
    DataTransfer,
    DataTransferPackage,
    DataTransferPackageCopy,
    DataTransferPackageMember,
    DataTransferRoute,
    DataTransferUnpack,
)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-battery")

    @factory.post_generation
    def groups(self, create, extracted, **kwargs):
        if create and extracted:
            for name in extracted:
                self.groups.add(Group.objects.get(name=name))
        if create:
            self.save()


def operator(username: str = "operator") -> User:
    return UserFactory(username=username, is_staff=True, groups=["operators"])


def scientist(username: str = "scientist") -> User:
    return UserFactory(username=username, groups=["scientists"])


def worker_user(username: str = "worker") -> User:
    return UserFactory(username=username, groups=["workers"])


class SiteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Site
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"site{n}")
    title = factory.LazyAttribute(lambda s: s.name.title())


class DataLocationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DataLocation

    site = factory.SubFactory(SiteFactory)
    name = factory.LazyAttribute(lambda loc: f"{loc.location_type.lower().replace('_', '-')}-{loc.site.name}")
    location_type = LocationType.BUFFER
    storage_type = StorageType.DISK
    base_path = factory.LazyAttribute(lambda loc: f"/data/{loc.site.name}/{loc.name}")
    host = factory.LazyAttribute(lambda loc: f"{loc.site.name}-dtn.example.org")


class InstrumentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Instrument
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"Instrument-{n}")


class ObservationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Observation

    obs_id = factory.Sequence(lambda n: f"obs-{n:06d}")
    instrument = factory.SubFactory(InstrumentFactory)
    target_name = "Orion-KL"
    start_time = factory.LazyFunction(lambda: timezone.now() - timedelta(hours=2))
    end_time = factory.LazyAttribute(lambda o: o.start_time + timedelta(hours=1))


class RawDataPackageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RawDataPackage

    name = factory.Sequence(lambda n: f"raw-{n:06d}.tar")
    observation = factory.SubFactory(ObservationFactory)
    size = 5 * 10**9
    checksum = factory.Sequence(lambda n: f"{n:064x}")


class RawDataFileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RawDataFile

    package = factory.SubFactory(RawDataPackageFactory)
    relative_path = factory.Sequence(lambda n: f"scan-{n:04d}.fits")
    size = 10**6
    checksum = factory.Sequence(lambda n: f"{n:064x}")


class RawDataPackageCopyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RawDataPackageCopy

    raw_package = factory.SubFactory(RawDataPackageFactory)
    location = factory.SubFactory(DataLocationFactory)
    path = factory.LazyAttribute(lambda c: c.raw_package.name)
    status = CopyStatus.PRESENT


class RawDataFileCopyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RawDataFileCopy

    raw_file = factory.SubFactory(RawDataFileFactory)
    location = factory.SubFactory(DataLocationFactory, location_type=LocationType.PROCESSING)
    path = factory.LazyAttribute(lambda c: c.raw_file.relative_path)


class RouteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DataTransferRoute

    origin_site = factory.SubFactory(SiteFactory)
    destination_site = factory.SubFactory(SiteFactory)
    route_type = RouteType.DIRECT
    method = TransferMethod.BBCP


class DataTransferPackageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DataTransferPackage

    name = factory.Sequence(lambda n: f"dtp-{n:06d}.tar")
    origin_location = factory.SubFactory(DataLocationFactory)
    archive_path = factory.LazyAttribute(lambda d: f"bundles/{d.name}")
    payload_size = 0


class DataTransferPackageMemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DataTransferPackageMember

    transfer_package = factory.SubFactory(DataTransferPackageFactory)
    raw_package = factory.SubFactory(RawDataPackageFactory)


class DataTransferPackageCopyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DataTransferPackageCopy

    transfer_package = factory.SubFactory(DataTransferPackageFactory)
    location = factory.SelfAttribute("transfer_package.origin_location")
    path = factory.SelfAttribute("transfer_package.archive_path")


class DataTransferFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DataTransfer

    transfer_package = factory.SubFactory(DataTransferPackageFactory)
    origin_location = factory.SelfAttribute("transfer_package.origin_location")
    destination_location = factory.SubFactory(DataLocationFactory)
    method = TransferMethod.BBCP


class DataTransferUnpackFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DataTransferUnpack

    transfer = factory.SubFactory(DataTransferFactory)


class DataTransferLogFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DataTransferLog

    job = factory.SubFactory(DataTransferFactory)
    message = "transfer started"


class LongTermArchiveTransferFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LongTermArchiveTransfer

    raw_package = factory.SubFactory(RawDataPackageFactory)
    source_location = factory.SubFactory(DataLocationFactory, location_type=LocationType.BUFFER)
    destination_location = factory.SubFactory(
        DataLocationFactory, site=factory.SelfAttribute("..source_location.site"),
        location_type=LocationType.LONG_TERM_ARCHIVE,
    )


class StagingJobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StagingJob

    owner = factory.SubFactory(UserFactory)
    destination_location = factory.SubFactory(DataLocationFactory, location_type=LocationType.PROCESSING)


class StagingJobPackageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StagingJobPackage

    job = factory.SubFactory(StagingJobFactory)
    raw_package = factory.SubFactory(RawDataPackageFactory)
