"""A scientist in a real browser sees why the request waits, and the reason change when the worker is back."""

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from opsdb.choices import LocationType
from opsdb.models import ApiToken, WorkerProfile
from staging.services import staging_job_create
from tests import factories as f
from tests.staging.test_browser import CHROMIUM_ARGS, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def waiting_request(role_groups):
    """Alice's request to cologne:processing, whose only worker was last seen 47 minutes ago."""
    cologne = f.SiteFactory(name="cologne")
    archive = f.DataLocationFactory(site=cologne, name="archive", location_type=LocationType.LONG_TERM_ARCHIVE)
    processing = f.DataLocationFactory(site=cologne, name="processing", location_type=LocationType.PROCESSING)
    package = f.RawDataPackageFactory(name="orion-1-a.tar")
    f.RawDataPackageCopyFactory(raw_package=package, location=archive, path="raw/orion-1-a.tar",
                                checksum_verified=package.checksum, verified_at=timezone.now())
    worker = f.worker_user("cologne-dtn-1")
    WorkerProfile.objects.create(user=worker).sites.set([cologne])
    token = ApiToken.objects.create(user=worker, prefix="opsdb_c", digest="c" * 64,
                                    last_used_at=timezone.now() - timedelta(minutes=47))
    job = staging_job_create(owner=f.scientist("alice"), raw_packages=[package], destination_location=processing)
    return job, token


def alice_sees_why(url: str, chromium_path: str, job_id: int, worker_back) -> tuple[str, str, str]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(15000)
        try:
            page.goto(f"{url}/accounts/login/")
            page.fill("#id_username", "alice")
            page.fill("#id_password", "correct-horse-battery")
            page.click("button:has-text('Sign in')")
            page.click("nav >> text=My requests")
            listed = page.inner_text("table.data tbody tr:first-child .why-cell")
            page.click("table.data tbody tr:first-child a")
            silent = page.inner_text("#job-why")
            shot(page, "why-01-no-worker")
            worker_back()
            page.wait_for_selector("#job-why .why[data-code='queued']", timeout=20000)
            back = page.inner_text("#job-why")
            shot(page, "why-02-queued")
            return listed, silent, back
        finally:
            browser.close()


def without_elapsed(text: str) -> str:
    """The reason without how long it has waited so far (it grows while the browser reads two pages)."""
    return re.sub(r"^Waiting since (\S+) \([^)]*\)", r"Waiting since \1", text)


def test_scientist_sees_why_the_request_waits(live_server, waiting_request, chromium_path, settings):
    settings.STAGING_PAGE_REFRESH_SECONDS = 1
    job, token = waiting_request

    def record_use():
        try:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
        finally:
            connection.close()

    def worker_back():  # the worker's next request records its token's use (from a thread of its own:
        thread = threading.Thread(target=record_use)  # the browser's thread runs an event loop)
        thread.start()
        thread.join()

    with ThreadPoolExecutor(max_workers=1) as pool:
        listed, silent, back = pool.submit(alice_sees_why, live_server.url, chromium_path, job.pk,
                                           worker_back).result(timeout=120)

    assert listed.startswith("Waiting since ")
    assert "No worker serving cologne has been seen for 47 min (cologne-dtn-1 last seen" in listed
    assert without_elapsed(silent) == without_elapsed(listed)  # the page refreshes each second: "(4 s)" → "(5 s)"
    assert back.startswith("Waiting since ")
    assert "Waiting for a worker at cologne to claim it (cologne-dtn-1 last seen" in back
