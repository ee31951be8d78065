"""manage.py explain KIND ID: a job's explanation on the command line; clear errors for bad input."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from opsdb.explanation import clock
from opsdb.registry import job_kinds
from opsdb.services import job_claim, job_fail
from tests import factories as f

pytestmark = pytest.mark.django_db


def explain(*args) -> str:
    out = StringIO()
    call_command("explain", *args, stdout=out)
    return out.getvalue()


def test_explain_prints_why_since_and_code():
    job = job_claim(job=f.DataTransferUnpackFactory(), worker="cologne-dtn-1")
    job, _ = job_fail(job=job, lease_token=job.lease_token, error="No space left on device",
                      log_path="/var/log/opsdb/unpack-1.log")

    lines = explain("unpack", str(job.pk)).splitlines()

    assert lines[0] == f"unpack #{job.pk} {job}: Pending"
    assert lines[1] == (f"Why: Retry 2 of 5 at {clock(job.next_attempt_at)}, after “No space left on device” at "
                        f"{clock(job.updated_at)}.")
    assert lines[2].startswith("Since: ") and lines[2].endswith(" ago)")
    assert lines[3:] == ["Code: retry_wait", "Log: /var/log/opsdb/unpack-1.log"]


def test_explain_json_is_the_api_shape():
    job = f.LongTermArchiveTransferFactory()

    printed = json.loads(explain("archive", str(job.pk), "--json"))

    assert set(printed) == {"code", "message", "since"}
    assert printed["code"] == "no_worker"


@pytest.mark.parametrize(("args", "error"), [
    (("teleport", "1"), f"No job kind 'teleport': use one of {', '.join(job_kinds.kinds())}, or raw."),
    (("raw", "nope.tar"), "No raw package with id or name 'nope.tar'."),
    (("transfer", "12"), "No transfer job with id '12'."),
    (("transfer", "x1"), "No transfer job with id 'x1'."),
    (("transfer", "١"), "No transfer job with id '١'."),
    (("transfer", "99999999999999999999999"), "No transfer job with id '99999999999999999999999'."),
])
def test_explain_bad_input_is_a_clear_error(args, error):
    with pytest.raises(CommandError) as refused:
        explain(*args)

    assert str(refused.value) == error


def test_explain_raw_package_in_no_bundle_point_says_it_waits_for_none():
    package = f.RawDataPackageFactory(name="obs-1.tar")

    lines = explain("raw", "obs-1.tar").splitlines()

    assert lines == [f"raw package #{package.pk} obs-1.tar",
                     "Why: it waits for no bundle (it is in one, or at no buffer that bundles); see "
                     "`manage.py custody obs-1.tar` for its copies and pending work."]
    assert json.loads(explain("raw", str(package.pk), "--json")) is None
