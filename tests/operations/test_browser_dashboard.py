"""An operator in a real browser: the dashboard shows a site stalled once its worker stops, and leads to the jobs."""

import io
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from opsdb.choices import JobStatus, LocationType
from opsdb.models import ApiToken
from staging.models import LongTermArchiveTransfer
from tests import factories as f
from tests.worker.conftest import WorkerLauncher, make_raw_package, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
SILENT_SECONDS = 4


@pytest.fixture
def cologne(role_groups, tmp_path):
    site = f.SiteFactory(name="cologne")

    def location(location_type):
        base = tmp_path / "sites" / "cologne" / location_type.lower()
        base.mkdir(parents=True)
        return f.DataLocationFactory(site=site, location_type=location_type, base_path=str(base), host="")

    buffer, archive = location(LocationType.BUFFER), location(LocationType.LONG_TERM_ARCHIVE)
    f.operator("operator")
    return {"site": site, "buffer": buffer, "archive": archive}


def new_archive_job(cologne, name: str) -> LongTermArchiveTransfer:
    package = make_raw_package(cologne["buffer"], name, {"scan.fits": os.urandom(10_000)})
    return LongTermArchiveTransfer.objects.create(raw_package=package, source_location=cologne["buffer"],
                                                  destination_location=cologne["archive"])


@pytest.fixture
def cologne_worker(live_server, cologne, tmp_path):
    out = io.StringIO()
    call_command("create_worker", "cologne-dtn-1", "--site", "cologne", stdout=out, stderr=io.StringIO())
    launcher = WorkerLauncher(live_server.url, out.getvalue().strip(), tmp_path / "worker-logs")
    process = launcher.start("--kinds", "archive", "--sites", "cologne", "--name", "cologne-dtn-1")
    yield process
    if process.poll() is None:
        process.send_signal(signal.SIGCONT)
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=20)
        finally:
            launcher.kill_leftovers()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def open_dashboard(url: str, chromium_path: str, steps):
    """Runs ``steps(page)`` in a signed-in operator's browser, in a thread of its own (Playwright's greenlets)."""
    from playwright.sync_api import sync_playwright

    def session():
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(15000)
            try:
                page.goto(f"{url}/ops/")
                assert "/admin/login/" in page.url
                page.fill("#id_username", "operator")
                page.fill("#id_password", "correct-horse-battery")
                page.click("input[type=submit]")
                page.wait_for_url(f"{url}/ops/")
                return steps(page)
            finally:
                browser.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(session).result(timeout=120)


def test_operator_sees_a_stalled_site_and_follows_the_link_to_its_waiting_jobs(
        live_server, cologne, cologne_worker, chromium_path, settings):
    settings.WORKER_SILENT_SECONDS = SILENT_SECONDS
    first = new_archive_job(cologne, "raw-first.tar")
    wait_until(lambda: LongTermArchiveTransfer.objects.get(pk=first.pk).status == JobStatus.COMPLETED,
               timeout=60, message="the worker archives the first package")

    def while_working(page):
        row = page.locator("tr.site-row[data-site='cologne']")
        text = row.inner_text()
        shot(page, "ops-01-dashboard-flowing")
        return text, page.locator("tr.stalled-site").count()

    text, stalled = open_dashboard(live_server.url, chromium_path, while_working)
    assert "cologne-dtn-1" in text and "stalled" not in text
    assert stalled == 0

    cologne_worker.send_signal(signal.SIGSTOP)  # frozen, as with kill -STOP
    time.sleep(2)  # a claim it sent just before is answered (with nothing) before there is work to claim
    waiting = new_archive_job(cologne, "raw-second.tar")
    last_seen = ApiToken.objects.get(user__username="cologne-dtn-1").last_used_at
    time.sleep(max(0.0, (last_seen - timezone.now()).total_seconds() + SILENT_SECONDS + 0.5))

    def after_stop(page):
        page.reload()
        stalled = page.locator("tr.stalled-site[data-site='cologne']")
        stalled.wait_for()
        summary = stalled.inner_text()
        site_row = page.locator("tr.site-row[data-site='cologne']").inner_text()
        shot(page, "ops-02-dashboard-stalled")
        stalled.locator("a.waiting-link").first.click()
        page.wait_for_url("**/admin/staging/longtermarchivetransfer/**")
        shot(page, "ops-03-waiting-jobs")
        return summary, site_row, page.locator("#result_list tbody tr").all_inner_texts()

    summary, site_row, rows = open_dashboard(live_server.url, chromium_path, after_stop)

    assert "Stalled site: cologne" in summary
    assert "No worker serving cologne seen for" in summary and "cologne-dtn-1 last seen" in summary
    assert "1 long term archive transfer waiting" in summary
    assert "stalled" in site_row
    assert len(rows) == 1 and "raw-second.tar" in rows[0]
    assert LongTermArchiveTransfer.objects.get(pk=waiting.pk).status == JobStatus.PENDING
