"""A scientist in a real browser: sign in, find, select, preview, submit, watch it staged, cancel another."""

import hashlib
import io
import signal
import tarfile
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from opsdb.choices import JobStatus, LocationType
from staging.models import StagingJob
from tests import factories as f
from tests.worker.conftest import WorkerLauncher

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


def write_archived_package(archive, observation, name: str, files: dict[str, bytes]):
    """A raw package whose tar really exists in ``archive``'s folder, with true checksums."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for relative_path, content in files.items():
            info = tarfile.TarInfo(relative_path)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    data = buffer.getvalue()
    path = Path(archive.base_path) / "raw" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    package = f.RawDataPackageFactory(name=name, observation=observation, size=len(data),
                                      checksum=hashlib.sha256(data).hexdigest())
    for relative_path, content in files.items():
        f.RawDataFileFactory(package=package, relative_path=relative_path, size=len(content),
                             checksum=hashlib.sha256(content).hexdigest())
    f.RawDataPackageCopyFactory(raw_package=package, location=archive, path=f"raw/{name}")
    return package


@pytest.fixture
def world(tmp_path):
    """cologne and cornell, each with an archive and a processing folder; Orion data archived at cologne."""
    sites = {name: f.SiteFactory(name=name) for name in ("cologne", "cornell")}

    def location(site, name, kind):
        folder = tmp_path / site / name
        folder.mkdir(parents=True)
        return f.DataLocationFactory(site=sites[site], name=name, location_type=kind, base_path=str(folder))

    archive = location("cologne", "archive", LocationType.LONG_TERM_ARCHIVE)
    processing = location("cologne", "processing", LocationType.PROCESSING)
    location("cornell", "processing", LocationType.PROCESSING)
    cam = f.InstrumentFactory(name="Prime-Cam")
    start = timezone.now() - timedelta(days=3)
    single = f.ObservationFactory(obs_id="obs-orion-1", instrument=cam, target_name="Orion-KL", start_time=start)
    double = f.ObservationFactory(obs_id="obs-orion-2", instrument=cam, target_name="Orion-KL",
                                  start_time=start + timedelta(hours=2))
    other = f.ObservationFactory(obs_id="obs-m82-1", instrument=cam, target_name="M82", start_time=start)
    write_archived_package(archive, single, "orion-1-a.tar", {"scan-01.fits": b"A" * 4000, "meta.json": b"{}"})
    write_archived_package(archive, double, "orion-2-a.tar", {"scan-01.fits": b"B" * 3000})
    write_archived_package(archive, double, "orion-2-b.tar", {"scan-02.fits": b"C" * 2000})
    write_archived_package(archive, other, "m82-1-a.tar", {"scan-01.fits": b"D" * 1000})
    f.scientist("scientist")
    return {"processing": processing}


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def scientist_session(url: str, chromium_path: str, processing_base: str) -> list[str]:
    """Everything the scientist does in the browser; returns the staged paths the page showed.

    Runs in its own thread: Playwright's sync API switches greenlets, which would give Django's
    context-local connections of the test thread a life of their own.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900},
                                      permissions=["clipboard-read", "clipboard-write"])
        page = context.new_page()
        page.set_default_timeout(15000)
        try:
            return scientist_steps(page, url, processing_base)
        finally:
            browser.close()


def scientist_steps(page, url: str, base: str) -> list[str]:
    # Sign in (anonymous visitors land on the login page).
    page.goto(f"{url}/")
    assert "/accounts/login/" in page.url
    shot(page, "01-login")
    page.fill("#id_username", "scientist")
    page.fill("#id_password", "correct-horse-battery")
    page.click("button:has-text('Sign in')")

    # Search and select: one package by its checkbox, then a whole observation.
    page.fill("#id_target", "orion")
    page.click("button:has-text('Search')")
    assert page.locator("table.data tbody tr:not(.obs-row)").count() == 3
    page.check("input[aria-label='Select orion-1-a.tar']")
    page.click("button:has-text('Add checked packages')")
    page.click("tr.obs-row:has-text('obs-orion-2') button:has-text('Select whole observation')")
    assert "3 packages selected" in page.inner_text("#selection-bar")
    shot(page, "02-find-data")

    # Preview, then submit.
    page.click("a:has-text('Request staging →')")
    page.select_option("#id_destination_location", label=f"cologne:processing — {base}")
    page.fill("#id_note", "Orion maps for the paper")
    page.fill("#id_lifetime_days", "400")
    page.click("button:has-text('Preview')")
    assert "The lifetime can be at most 90 days." in page.inner_text("form.card")
    shot(page, "03a-refusal")
    page.fill("#id_lifetime_days", "14")
    page.click("button:has-text('Preview')")
    preview = page.inner_text("section.preview")
    assert "3 packages" in preview and "cologne:archive" in preview
    shot(page, "03-preview")
    page.click("button:has-text('Submit request')")

    # Watch it reach READY while the worker double stages it; the page updates itself in place.
    page.wait_for_selector("#job-status[data-status='READY']", timeout=30000)
    paths = page.input_value("#all-paths").split()
    page.click("button[data-copy-target='all-paths']")
    page.wait_for_selector("button:has-text('Copied ✓')")
    assert page.evaluate("navigator.clipboard.readText()").split() == paths
    page.click("summary:has-text('orion-1-a.tar')")
    shot(page, "04-request-ready")

    # A second request, to a site no worker serves, is cancelled while it waits.
    page.click("nav >> text=Find data")
    page.fill("#id_target", "M82")
    page.click("button:has-text('Search')")
    page.click("button:has-text('Add all 1 results')")
    page.click("a:has-text('Request staging →')")
    page.select_option("#id_destination_location", index=2)
    page.click("button:has-text('Preview')")
    page.click("button:has-text('Submit request')")
    page.wait_for_selector("#job-status[data-status='PENDING']")
    page.click("nav >> text=My requests")
    assert page.locator("table.data tbody tr").count() == 2
    shot(page, "05-my-requests")
    page.click("table.data tbody tr:first-child a")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Cancel request')")
    page.wait_for_selector("#job-status[data-status='CANCELLED']")
    shot(page, "06-request-cancelled")
    return paths


@pytest.fixture
def cologne_worker(live_server, role_groups, world, tmp_path):
    """The reference worker, speaking HTTP to the live server, doing stage jobs at cologne only."""
    out = io.StringIO()
    call_command("create_worker", "cologne-stager", "--site", "cologne", stdout=out, stderr=io.StringIO())
    launcher = WorkerLauncher(live_server.url, out.getvalue().strip(), tmp_path / "worker-logs")
    process = launcher.start("--kinds", "stage", "--sites", "cologne")
    yield process
    process.send_signal(signal.SIGTERM)
    try:
        process.communicate(timeout=20)
    finally:
        launcher.kill_leftovers()


def test_scientist_requests_data_watches_it_staged_and_cancels_another(live_server, world, cologne_worker,
                                                                       chromium_path, settings):
    settings.STAGING_PAGE_REFRESH_SECONDS = 1
    base = world["processing"].base_path
    with ThreadPoolExecutor(max_workers=1) as pool:
        paths = pool.submit(scientist_session, live_server.url, chromium_path, base).result(timeout=180)

    assert sorted(paths) == sorted([
        f"{base}/staged/orion-1-a/meta.json", f"{base}/staged/orion-1-a/scan-01.fits",
        f"{base}/staged/orion-2-a/scan-01.fits", f"{base}/staged/orion-2-b/scan-02.fits",
    ])
    assert all(Path(p).is_file() for p in paths)
    statuses = dict(StagingJob.objects.values_list("destination_location__site__name", "status"))
    assert statuses == {"cologne": JobStatus.READY, "cornell": JobStatus.CANCELLED}
