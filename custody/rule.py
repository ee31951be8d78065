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


def _open(column: str) -> str:
    return f"{column} IN ('PENDING', 'ACTIVE', 'FAILED')"


def _no_open_hop(bundle: str, location: str, t: dict[str, str], *, unpacked_from: bool = False) -> str:
    """SQL: no transfer of ``bundle`` leaving ``location`` is open, nor one arriving there or its unpack there.

    ``unpacked_from``: also the unpack, wherever it is, of a transfer that left ``location`` (a
    bundle archive stays until what it carried is unpacked at the other end).
    """
    leaving_unpack = f" OR {_open('u.status')}" if unpacked_from else ""
    return (
        f"NOT EXISTS (SELECT 1 FROM {t['transfer']} tr LEFT JOIN {t['unpack']} u ON u.transfer_id = tr.id "
        f"WHERE tr.transfer_package_id = {bundle} "
        f"AND ((tr.origin_location_id = {location} AND ({_open('tr.status')}{leaving_unpack})) "
        f"OR (tr.destination_location_id = {location} AND ({_open('tr.status')} OR {_open('u.status')}))))"
    )


def _safe_packages(packages: str, t: dict[str, str]) -> str:
    """CTEs over ``cand_pkg`` (the packages in question, from the SQL ``packages``): which are safe, set-based.

    ``safe``: their safe archive copies (PRESENT in a LONG_TERM_ARCHIVE location with the package's
    own checksum verified, ``opsdb.custody.is_safe_copy``); ``safe_count``: the distinct sites of
    those per package and when the first was verified; ``missing``: packages that lack one at a
    site their copies outside the archives require. Hash joins over the candidates, not a lookup per row.
    """
    return (
        f"cand_pkg AS MATERIALIZED ({packages}), "
        f"safe AS MATERIALIZED (SELECT a.raw_package_id, al.site_id, a.verified_at FROM {t['copy']} a "
        f"JOIN {t['loc']} al ON al.id = a.location_id JOIN cand_pkg cp ON cp.raw_package_id = a.raw_package_id "
        f"WHERE al.location_type = 'LONG_TERM_ARCHIVE' AND a.status = 'PRESENT' AND a.checksum_verified <> '' "
        f"AND LOWER(a.checksum_verified) = LOWER(cp.checksum)), "
        f"safe_count AS MATERIALIZED (SELECT raw_package_id, COUNT(DISTINCT site_id) AS sites, "
        f"MIN(verified_at) AS archived_at FROM safe GROUP BY raw_package_id), "
        f"needed AS (SELECT DISTINCT o.raw_package_id, r.site_id FROM {t['copy']} o "
        f"JOIN {t['loc']} ol ON ol.id = o.location_id JOIN required r ON r.origin_site_id = ol.site_id "
        f"JOIN cand_pkg cp ON cp.raw_package_id = o.raw_package_id WHERE ol.location_type <> 'LONG_TERM_ARCHIVE'), "
        f"missing AS MATERIALIZED (SELECT DISTINCT n.raw_package_id FROM needed n LEFT JOIN safe s "
        f"ON s.raw_package_id = n.raw_package_id AND s.site_id = n.site_id WHERE s.raw_package_id IS NULL), "
        f"safe_pkg AS MATERIALIZED (SELECT sc.raw_package_id, sc.archived_at FROM safe_count sc "
        f"WHERE sc.sites >= {int(settings.ARCHIVE_MIN_COPIES)} "
        f"AND NOT EXISTS (SELECT 1 FROM missing x WHERE x.raw_package_id = sc.raw_package_id))"
    )


def _safe_package_check(package: str, t: dict[str, str]) -> str:
    """SQL condition: the package whose id is the SQL ``package`` is safe — the same rule 1 as
    ``_safe_packages``, asked per row by index lookups on the package's few copies.

    Scalar subqueries (a count, compared), never EXISTS: PostgreSQL would turn those into joins and
    hash every copy of every package; these are looked up only for the rows the query reads, so a
    query with a LIMIT stops as soon as it has found enough.
    """
    safe_copy = (f"FROM {t['copy']} a JOIN {t['loc']} al ON al.id = a.location_id JOIN {t['pkg']} ap "
                 f"ON ap.id = a.raw_package_id WHERE a.raw_package_id = {package} "
                 f"AND al.location_type = 'LONG_TERM_ARCHIVE' AND a.status = 'PRESENT' AND a.checksum_verified <> '' "
                 f"AND LOWER(a.checksum_verified) = LOWER(ap.checksum)")
    return (
        f"(SELECT COUNT(DISTINCT al.site_id) {safe_copy}) >= {int(settings.ARCHIVE_MIN_COPIES)} "
        f"AND (SELECT COUNT(*) FROM {t['copy']} o JOIN {t['loc']} ol ON ol.id = o.location_id "
        f"JOIN required r ON r.origin_site_id = ol.site_id WHERE o.raw_package_id = {package} "
        f"AND ol.location_type <> 'LONG_TERM_ARCHIVE' "
        f"AND NOT EXISTS (SELECT 1 {safe_copy} AND al.site_id = r.site_id)) = 0"
    )


def deletable_raw_copies_sql(location_ids: Sequence[int], required: dict[int, set[int]], *,
                             status: str = CopyStatus.PRESENT, copy_ids: Sequence[int] | None = None,
                             limit: int | None = None) -> str:
    """SELECT of (id, size, archived_at) of the raw package copies the rule allows to delete at these locations.

    ``archived_at``: when its first safe archive copy was verified (UNDER_PRESSURE deletes the
    oldest-archived first). ``status``: PRESENT for new candidates; DELETION_SCHEDULED to check
    again, at claim, copies scheduled earlier (``copy_ids`` narrows to a job's).

    ``limit``: at most that many, in no particular order and with ``archived_at`` NULL: safety is
    then checked per candidate (``_safe_package_check``) and the query stops at the limit, so it
    costs what it returns (plus the candidates not safe yet), not what the location holds.
    Without it, safety is computed set-based over every candidate (hash joins), which a query
    that orders all of them by ``archived_at`` needs.
    """
    t = _tables()
    values = _required_values(required)
    ids = f"AND c.id IN ({_ints(copy_ids)})" if copy_ids is not None else ""
    # The cheap conditions (no open job reads it, no hop left) first: only what passes them is
    # checked for safety, so copies that wait for their jobs cost nothing each tick.
    if limit is None:
        package = f"p.size, p.checksum FROM {t['copy']} c JOIN {t['pkg']} p ON p.id = c.raw_package_id"
    else:  # the package looked up per row read (a join would hash every package)
        package = f"(SELECT p.size FROM {t['pkg']} p WHERE p.id = c.raw_package_id) AS size FROM {t['copy']} c"
    candidates = (
        f"SELECT c.id, c.raw_package_id, c.location_id, {package} "
        f"JOIN {t['loc']} l ON l.id = c.location_id "
        f"LEFT JOIN {t['member']} m ON m.raw_package_id = c.raw_package_id "
        f"LEFT JOIN {t['bundle']} b ON b.id = m.transfer_package_id "
        f"WHERE c.status = {_status(status)} AND c.location_id IN ({_ints(location_ids)}) {ids} "
        f"AND l.location_type IN ({', '.join(repr(str(v)) for v in DELETABLE_TYPES)}) "
        f"AND NOT (b.id IS NOT NULL AND b.origin_location_id = c.location_id AND {_open('b.status')}) "
        f"AND NOT EXISTS (SELECT 1 FROM {t['archive']} at WHERE at.raw_package_id = c.raw_package_id "
        f"AND at.source_location_id = c.location_id AND {_open('at.status')}) "
        f"AND NOT EXISTS (SELECT 1 FROM {t['sjp']} sjp JOIN {t['sj']} sj ON sj.id = sjp.job_id "
        f"WHERE sjp.raw_package_id = c.raw_package_id AND sjp.source_location_id = c.location_id "
        f"AND {_open('sj.status')}) "
        # (no bundle: m's NULL matches no transfer)
        f"AND {_no_open_hop('m.transfer_package_id', 'c.location_id', t)}"
    )
    if limit is not None:
        return (
            f"WITH required(origin_site_id, site_id) AS (VALUES {values}) "
            f"SELECT c.id, c.size, NULL AS archived_at FROM ({candidates}) c "
            f"WHERE {_safe_package_check('c.raw_package_id', t)} LIMIT {int(limit)}"
        )
    sql = (
        f"WITH required(origin_site_id, site_id) AS (VALUES {values}), cand AS MATERIALIZED ({candidates}), "
        f"{_safe_packages('SELECT DISTINCT raw_package_id, checksum FROM cand', t)} "
        f"SELECT c.id, c.size, sp.archived_at FROM cand c JOIN safe_pkg sp ON sp.raw_package_id = c.raw_package_id"
    )
    return sql


def deletable_bundle_copies_sql(location_ids: Sequence[int], required: dict[int, set[int]], *,
                                status: str = CopyStatus.PRESENT, copy_ids: Sequence[int] | None = None,
                                limit: int | None = None) -> str:
    """SELECT of (id, size, archived_at) of the transfer package copies the rule allows to delete here.

    ``limit``: only the candidates, in id order, whose members add up to at most that many
    packages (at least one candidate) are checked, each member per row (``_safe_package_check``):
    the query costs about ``limit`` lookups however many bundles the location holds.
    """
    t = _tables()
    values = _required_values(required)
    ids = f"AND d.id IN ({_ints(copy_ids)})" if copy_ids is not None else ""
    candidates = (
        f"SELECT d.id, d.transfer_package_id, d.location_id, d.created_at, COALESCE(b.size, b.payload_size) AS size "
        f"FROM {t['bcopy']} d JOIN {t['loc']} l ON l.id = d.location_id "
        f"JOIN {t['bundle']} b ON b.id = d.transfer_package_id "
        f"WHERE d.status = {_status(status)} AND d.location_id IN ({_ints(location_ids)}) {ids} "
        f"AND l.location_type IN ('SOURCE', 'BUFFER') AND b.status = 'COMPLETED' "
        f"AND {_no_open_hop('d.transfer_package_id', 'd.location_id', t, unpacked_from=True)}"
    )
    if limit is not None:
        counted = (f"SELECT k.*, SUM(k.members) OVER (ORDER BY k.id ROWS UNBOUNDED PRECEDING) - k.members AS before "
                   f"FROM (SELECT cd.*, (SELECT COUNT(*) FROM {t['member']} mc "
                   f"WHERE mc.transfer_package_id = cd.transfer_package_id) AS members FROM ({candidates}) cd) k")
        return (
            f"WITH required(origin_site_id, site_id) AS (VALUES {values}) "
            f"SELECT d.id, d.size, d.created_at AS archived_at FROM ({counted}) d "
            f"WHERE d.before < {int(limit)} AND (SELECT COUNT(*) FROM {t['member']} m "
            f"WHERE m.transfer_package_id = d.transfer_package_id "
            f"AND NOT ({_safe_package_check('m.raw_package_id', t)})) = 0"
        )
    members = (
        f"SELECT DISTINCT m.raw_package_id, p.checksum FROM {t['member']} m JOIN {t['pkg']} p "
        f"ON p.id = m.raw_package_id WHERE m.transfer_package_id IN (SELECT transfer_package_id FROM cand)"
    )
    sql = (
        f"WITH required(origin_site_id, site_id) AS (VALUES {values}), cand AS MATERIALIZED ({candidates}), "
        f"{_safe_packages(members, t)} "
        f"SELECT d.id, d.size, d.created_at AS archived_at FROM cand d "
        f"WHERE NOT EXISTS (SELECT 1 FROM {t['member']} m WHERE m.transfer_package_id = d.transfer_package_id "
        f"AND NOT EXISTS (SELECT 1 FROM safe_pkg sp WHERE sp.raw_package_id = m.raw_package_id))"
    )
    return sql


def _ints(values: Sequence[int]) -> str:
    """Ids inlined as SQL literals (integers only: nothing a user typed reaches the text)."""
    return ", ".join(str(int(v)) for v in values) or "NULL"


def _status(status: str) -> str:
    if status not in CopyStatus.values:
        raise ValueError(f"not a copy status: {status!r}")
    return f"'{status}'"
