"""A small staging topology: two sites, each with an archive and a processing area, and archived data."""

from dataclasses import dataclass, field

import pytest

from opsdb.choices import LocationType
from opsdb.models import DataLocation, RawDataPackage
from tests import factories as f


@dataclass
class Topology:
    cologne_archive: DataLocation
    cologne_archive_2: DataLocation
    cologne_processing: DataLocation
    cologne_buffer: DataLocation
    cornell_archive: DataLocation
    cornell_processing: DataLocation
    packages: list[RawDataPackage] = field(default_factory=list)


def archived_package(archive: DataLocation, *, files: int = 2, **kwargs) -> RawDataPackage:
    """A raw package with ``files`` files and a present copy at ``archive``."""
    package = f.RawDataPackageFactory(**kwargs)
    for i in range(files):
        f.RawDataFileFactory(package=package, relative_path=f"scan-{i:02d}.fits", size=1000 + i)
    f.RawDataPackageCopyFactory(raw_package=package, location=archive, path=f"raw/{package.name}")
    return package


@pytest.fixture(autouse=True)
def role_groups(db) -> None:
    """The role groups come from a data migration; a transactional test's flush removes them."""
    from django.apps import apps
    from django.contrib.auth.models import Group

    from opsdb.roles import SCIENTISTS, sync_role_groups

    if Group.objects.filter(name=SCIENTISTS).exists():
        return
    # sync_role_groups marks app configs model-less (it is written for a migration's historical
    # apps); keep the live registry as it was.
    saved = {config: config.models_module for config in apps.get_app_configs()}
    try:
        sync_role_groups(apps)
    finally:
        for config, module in saved.items():
            config.models_module = module


@pytest.fixture
def topology(db) -> Topology:
    cologne, cornell = f.SiteFactory(name="cologne"), f.SiteFactory(name="cornell")
    loc = f.DataLocationFactory
    topo = Topology(
        cologne_archive=loc(site=cologne, name="archive", location_type=LocationType.LONG_TERM_ARCHIVE, priority=1),
        cologne_archive_2=loc(site=cologne, name="tape", location_type=LocationType.LONG_TERM_ARCHIVE, priority=0),
        cologne_processing=loc(site=cologne, name="processing", location_type=LocationType.PROCESSING),
        cologne_buffer=loc(site=cologne, name="buffer", location_type=LocationType.BUFFER),
        cornell_archive=loc(site=cornell, name="archive", location_type=LocationType.LONG_TERM_ARCHIVE, priority=5),
        cornell_processing=loc(site=cornell, name="processing", location_type=LocationType.PROCESSING),
    )
    topo.packages = [archived_package(topo.cologne_archive) for _ in range(3)]
    return topo


@pytest.fixture
def alice():
    return f.scientist("alice")


@pytest.fixture
def bob():
    return f.scientist("bob")


@pytest.fixture
def operator_user():
    return f.operator("olga")
