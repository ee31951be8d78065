"""The deletion rule: which copies may be deleted, as one documented query per kind of copy.

A **raw package copy** at a SOURCE, BUFFER or PROCESSING location (a data product registered at a
processing area comes home to its site's archive, then may go there) may go only when all of this holds:

1. the package is *safe*: it has a safe archive copy (PRESENT in a LONG_TERM_ARCHIVE location,
   its own checksum verified) at **every** site its routes deliver it to, and such copies at no
   fewer than ``ARCHIVE_MIN_COPIES`` distinct sites. The sites its routes deliver it to are the
   project's one definition (``settings.CUSTODY_ARCHIVE_SITES``, ``transfers.destinations``):
   from each site where it has a copy outside the archives, every site the active routes reach,
   that site included, that has an active long-term archive;
2. no open job (PENDING, ACTIVE, or FAILED and so waiting for an operator's retry) reads it:
   the build of its bundle at that location, an archive transfer from that location, a staging
   job reading it there;
3. no transfer of its bundle leaves from or arrives at that location, nor an unpack there, that
   is still open: a relay's hops and an unpack that would write the copy again are waited for.

A **transfer package copy** (a bundle's archive) at a SOURCE or BUFFER location may go when the
bundle is built (COMPLETED), no transfer of it from or to that location nor an unpack of one is
open, and every member raw package is safe (1.) — so a relay's copy stays until the next hop has
left and the data it carries is archived wherever its routes deliver it.

Both are one SELECT of copy ids each (``deletable_raw_copies_sql`` / ``deletable_bundle_copies_sql``),
with the required sites as a small VALUES list of (site of a copy, archive site) pairs computed
from the routes (a handful of rows). The
database guard (``opsdb/migrations/0010_copy_lifecycle.py``) backs rule 1 whatever the code path:
the last verified PRESENT copy of a raw package cannot be deleted.
"""

from collections.abc import Sequence

from django.conf import settings

from opsdb import custody
from opsdb.choices import CopyStatus, JobStatus, LocationType
from opsdb.models import DataLocation, RawDataPackage, RawDataPackageCopy
from staging.models import LongTermArchiveTransfer, StagingJob, StagingJobPackage
from transfers.models import (
    DataTransfer,
    DataTransferPackage,
    DataTransferPackageCopy,
    DataTransferPackageMember,
    DataTransferUnpack,
)

OPEN = (JobStatus.PENDING, JobStatus.ACTIVE, JobStatus.FAILED)
DELETABLE_TYPES = (LocationType.SOURCE, LocationType.BUFFER, LocationType.PROCESSING)


def required_archive_sites() -> dict[int, set[int]]:
    """Per site id: the sites whose archive must hold a package that has a copy there (three queries).

    The project's one definition (``settings.CUSTODY_ARCHIVE_SITES``, used by "where is my data"
    too), asked once per site: a package's required archives are the union over the sites of its
    copies outside the archives.
    """
    one_location = {}
    for pk, site_id in (DataLocation.objects.exclude(location_type=LocationType.LONG_TERM_ARCHIVE)
                        .order_by("pk").values_list("pk", "site_id")):
        one_location.setdefault(site_id, pk)
    by_site = custody.required_archive_sites({site: [loc] for site, loc in one_location.items()})
    return {site: set(sites) for site, sites in by_site.items()}


def _tables() -> dict[str, str]:
    return {name: model._meta.db_table for name, model in {
        "copy": RawDataPackageCopy, "loc": DataLocation, "pkg": RawDataPackage, "member": DataTransferPackageMember,
        "bundle": DataTransferPackage, "bcopy": DataTransferPackageCopy, "transfer": DataTransfer,
        "unpack": DataTransferUnpack, "archive": LongTermArchiveTransfer, "sjp": StagingJobPackage,
        "sj": StagingJob,
    }.items()}


def _required_values(required: dict[int, set[int]]) -> str:
    """The required (site of a copy, archive site) pairs as a VALUES list; (0, 0) matches nothing."""
    pairs = sorted((loc, site) for loc, sites in required.items() for site in sites) or [(0, 0)]
    return ", ".join(f"({int(loc)}, {int(site)})" for loc, site in pairs)


def _safe(package: str, t: dict[str, str]) -> str:
    """SQL: the package ``package`` (an id expression) is safe.

    A safe archive copy is PRESENT in a LONG_TERM_ARCHIVE location with the package's own checksum
    verified (``opsdb.custody.is_safe_copy``). Inside an f-string, so the minimum number of archive
    sites is inlined (an integer setting).
    """
    safe_archive = (
        f"FROM {t['copy']} a JOIN {t['loc']} al ON al.id = a.location_id "
        f"WHERE a.raw_package_id = {package} AND al.location_type = 'LONG_TERM_ARCHIVE' AND a.status = 'PRESENT' "
        f"AND a.checksum_verified <> '' AND LOWER(a.checksum_verified) = "
        f"LOWER((SELECT sp.checksum FROM {t['pkg']} sp WHERE sp.id = {package}))"
    )
    return (
        f"(SELECT COUNT(DISTINCT al.site_id) {safe_archive}) >= {int(settings.ARCHIVE_MIN_COPIES)} "
        f"AND NOT EXISTS (SELECT 1 FROM {t['copy']} o JOIN {t['loc']} ol ON ol.id = o.location_id "
        f"JOIN required r ON r.origin_site_id = ol.site_id WHERE o.raw_package_id = {package} "
        f"AND ol.location_type <> 'LONG_TERM_ARCHIVE' "
        f"AND NOT EXISTS (SELECT 1 {safe_archive} AND al.site_id = r.site_id))"
    )


def _open(column: str) -> str:
    return f"{column} IN ('PENDING', 'ACTIVE', 'FAILED')"


def _no_open_hop(bundle: str, location: str, t: dict[str, str]) -> str:
    """SQL: no transfer of ``bundle`` from or to ``location`` is open, nor the unpack of one."""
    return (
        f"NOT EXISTS (SELECT 1 FROM {t['transfer']} tr LEFT JOIN {t['unpack']} u ON u.transfer_id = tr.id "
        f"WHERE tr.transfer_package_id = {bundle} "
        f"AND (tr.origin_location_id = {location} OR tr.destination_location_id = {location}) "
        f"AND ({_open('tr.status')} OR {_open('u.status')}))"
    )


def deletable_raw_copies_sql(location_ids: Sequence[int], required: dict[int, set[int]], *,
                             status: str = CopyStatus.PRESENT, copy_ids: Sequence[int] | None = None,
                             ) -> str:
    """SELECT of (id, size, archived_at) of the raw package copies the rule allows to delete at these locations.

    ``archived_at``: when its oldest verified archive copy was verified (UNDER_PRESSURE deletes the
    oldest-archived first). ``status``: PRESENT for new candidates; DELETION_SCHEDULED to check
    again, at claim, copies scheduled earlier (``copy_ids`` narrows to a job's).
    """
    t = _tables()
    values = _required_values(required)
    ids = f"AND c.id IN ({_ints(copy_ids)})" if copy_ids is not None else ""
    sql = (
        f"WITH required(origin_site_id, site_id) AS (VALUES {values}) "
        f"SELECT c.id, p.size, (SELECT MIN(a.verified_at) FROM {t['copy']} a JOIN {t['loc']} al "
        f"ON al.id = a.location_id WHERE a.raw_package_id = c.raw_package_id "
        f"AND al.location_type = 'LONG_TERM_ARCHIVE' AND a.status = 'PRESENT') AS archived_at "
        f"FROM {t['copy']} c JOIN {t['loc']} l ON l.id = c.location_id "
        f"JOIN {t['pkg']} p ON p.id = c.raw_package_id "
        f"LEFT JOIN {t['member']} m ON m.raw_package_id = c.raw_package_id "
        f"LEFT JOIN {t['bundle']} b ON b.id = m.transfer_package_id "
        f"WHERE c.status = {_status(status)} AND c.location_id IN ({_ints(location_ids)}) {ids} "
        f"AND l.location_type IN ({', '.join(repr(str(v)) for v in DELETABLE_TYPES)}) "
        f"AND {_safe('c.raw_package_id', t)} "
        f"AND NOT (b.id IS NOT NULL AND b.origin_location_id = c.location_id AND {_open('b.status')}) "
        f"AND NOT EXISTS (SELECT 1 FROM {t['archive']} at WHERE at.raw_package_id = c.raw_package_id "
        f"AND at.source_location_id = c.location_id AND {_open('at.status')}) "
        f"AND NOT EXISTS (SELECT 1 FROM {t['sjp']} sp JOIN {t['sj']} sj ON sj.id = sp.job_id "
        f"WHERE sp.raw_package_id = c.raw_package_id AND sp.source_location_id = c.location_id "
        f"AND {_open('sj.status')}) "
        f"AND (b.id IS NULL OR {_no_open_hop('b.id', 'c.location_id', t)})"
    )
    return sql


def deletable_bundle_copies_sql(location_ids: Sequence[int], required: dict[int, set[int]], *,
                                status: str = CopyStatus.PRESENT, copy_ids: Sequence[int] | None = None,
                                ) -> str:
    """SELECT of (id, size, archived_at) of the transfer package copies the rule allows to delete here."""
    t = _tables()
    values = _required_values(required)
    ids = f"AND d.id IN ({_ints(copy_ids)})" if copy_ids is not None else ""
    sql = (
        f"WITH required(origin_site_id, site_id) AS (VALUES {values}) "
        f"SELECT d.id, COALESCE(b.size, b.payload_size) AS size, d.created_at AS archived_at "
        f"FROM {t['bcopy']} d JOIN {t['loc']} l ON l.id = d.location_id "
        f"JOIN {t['bundle']} b ON b.id = d.transfer_package_id "
        f"WHERE d.status = {_status(status)} AND d.location_id IN ({_ints(location_ids)}) {ids} "
        f"AND l.location_type IN ('SOURCE', 'BUFFER') AND b.status = 'COMPLETED' "
        f"AND {_no_open_hop('b.id', 'd.location_id', t)} "
        f"AND NOT EXISTS (SELECT 1 FROM {t['member']} m WHERE m.transfer_package_id = b.id "
        f"AND NOT ({_safe('m.raw_package_id', t)}))"
    )
    return sql


def _ints(values: Sequence[int]) -> str:
    """Ids inlined as SQL literals (integers only: nothing a user typed reaches the text)."""
    return ", ".join(str(int(v)) for v in values) or "NULL"


def _status(status: str) -> str:
    if status not in CopyStatus.values:
        raise ValueError(f"not a copy status: {status!r}")
    return f"'{status}'"
