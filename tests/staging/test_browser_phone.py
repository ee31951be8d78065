"""A scientist on a phone (390 px wide) in a real browser: the pages fit, requests update in place,
ready data is kept longer or released, a cancelled request says who cancelled it, signing out says so."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.utils import timezone

from opsdb.choices import JobStatus
from opsdb.services import job_claim
from staging.models import StagingJob
from staging.services import staging_job_cancel, staging_job_create
from tests import factories as f
from tests.staging.test_browser import CHROMIUM_ARGS, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WIDTH = 390


def fits(page) -> None:
    """Nothing is wider than the screen, and Sign out is on it."""
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH, page.url
    box = page.locator("button:has-text('Sign out')").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= WIDTH, page.url


def phone_session(url: str, chromium_path: str, jobs: dict[str, int], moved: threading.Event,
                  loaded: threading.Event) -> dict:
    from playwright.sync_api import sync_playwright

    seen = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": WIDTH, "height": 844}).new_page()
        page.set_default_timeout(15000)
        try:
            page.goto(f"{url}/accounts/login/")
            page.fill("#id_username", "scientist")
            page.fill("#id_password", "correct-horse-battery")
            page.click("button:has-text('Sign in')")

            # Find data: nothing ticked is a warning, and the limit reads as a number of packages.
            fits(page)
            page.click("button:has-text('Add checked packages')")
            seen["empty_add"] = (page.get_attribute(".messages li", "class"), page.inner_text(".messages li"))
            seen["limit"] = page.inner_text("#selection-bar")
            shot(page, "phone-01-find")

            # My requests: the table scrolls in its own box and shows when data expires.
            page.click("nav >> text=My requests")
            fits(page)
            seen["list_headers"] = page.locator("table.data th").all_inner_texts()
            shot(page, "phone-02-requests")

            # A ready request: keep it 5 days longer, then release it.
            page.goto(f"{url}/requests/{jobs['ready']}/")
            fits(page)
            page.fill("#keep-days", "5")
            page.click("button:has-text('more days')")
            seen["kept"] = page.inner_text(".messages li")
            seen["kept_history"] = page.inner_text("#history")
            page.once("dialog", lambda dialog: dialog.accept())
            page.click("button:has-text('Release now')")
            seen["released"] = page.inner_text(".messages li")
            seen["released_history"] = page.inner_text("#history")
            shot(page, "phone-03-released")

            # A cancelled request's history says who cancelled it.
            page.goto(f"{url}/requests/{jobs['cancelled']}/")
            seen["cancelled_history"] = page.inner_text("#history")

            # A waiting request updates in place: no reload, a text selection survives.
            page.goto(f"{url}/requests/{jobs['waiting']}/")
            seen["meta_refresh"] = page.locator("meta[http-equiv=refresh]").count()
            page.evaluate("window.notReloaded = true")
            page.evaluate("""() => { const range = document.createRange();
                range.selectNodeContents(document.querySelector('[data-live=packages] td.mono'));
                window.getSelection().addRange(range); }""")
            loaded.set()
            assert moved.wait(30)
            page.wait_for_selector("#job-status[data-status='ACTIVE']", timeout=20000)
            seen["not_reloaded"] = page.evaluate("window.notReloaded === true")
            seen["selection"] = page.evaluate("window.getSelection().toString()")
            fits(page)
            shot(page, "phone-04-live")

            page.click("button:has-text('Sign out')")
            seen["signed_out"] = (page.url, page.inner_text(".messages li"))
        finally:
            browser.close()
    return seen


def test_scientist_on_a_phone(live_server, topology, chromium_path, settings):
    settings.STAGING_PAGE_REFRESH_SECONDS = 1
    scientist = f.scientist("scientist")
    scientist.email = "scientist@example.org"
    scientist.save()
    processing = topology.cologne_processing
    ready = staging_job_create(owner=scientist, raw_packages=topology.packages[:1], destination_location=processing)
    expires = timezone.now() + timedelta(days=14)
    StagingJob.objects.filter(pk=ready.pk).update(status=JobStatus.READY, expires_at=expires)
    cancelled = staging_job_create(owner=scientist, raw_packages=topology.packages[:1],
                                   destination_location=processing)
    staging_job_cancel(job=cancelled, by=scientist)
    waiting = staging_job_create(owner=scientist, raw_packages=topology.packages[:2], destination_location=processing)
    jobs = {"ready": ready.pk, "cancelled": cancelled.pk, "waiting": waiting.pk}
    moved, loaded = threading.Event(), threading.Event()

    with ThreadPoolExecutor(max_workers=1) as pool:
        session = pool.submit(phone_session, live_server.url, chromium_path, jobs, moved, loaded)
        assert loaded.wait(120)
        job_claim(job=StagingJob.objects.get(pk=waiting.pk), worker="cologne-stager")  # a worker takes it
        moved.set()
        seen = session.result(timeout=120)

    ready.refresh_from_db()
    assert seen["empty_add"][0] == "msg msg-warning"
    assert seen["empty_add"][1] == "Nothing was added: tick the packages you want first."
    assert "at most 500 packages" in seen["limit"]
    assert "Expires" in seen["list_headers"]
    assert seen["kept"].startswith(f"Request #{ready.pk} is kept until ")
    assert "Extended by 5 day(s) by scientist: kept until" in seen["kept_history"]
    assert seen["released"] == f"Request #{ready.pk} was released: its staged files are being removed."
    assert "Released early by scientist" in seen["released_history"]
    assert (ready.lifetime.days, ready.expires_at <= timezone.now()) == (19, True)
    assert "Cancelled by scientist." in seen["cancelled_history"]
    assert (seen["meta_refresh"], seen["not_reloaded"]) == (0, True)
    assert seen["selection"] != ""
    assert seen["signed_out"][0].endswith("/accounts/login/")
    assert seen["signed_out"][1] == "You are signed out."
