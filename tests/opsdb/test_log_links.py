"""LOG_URL_TEMPLATE: log paths become links (admin, API, the scientist's page), or text to copy without it;
a template that would make anything but an http(s) link is refused at start-up."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.urls import reverse

from opsdb.checks import log_url_template
from opsdb.deploy_checks import refuse_unsafe_start
from opsdb.log_links import log_url, template_problems
from opsdb.services import job_claim, job_fail
from staging.services import staging_job_create
from tests import factories as f
from tests.apiclient import operator_client

pytestmark = pytest.mark.django_db

TEMPLATE = "https://logs.example.org/files{path}?job={kind}-{id}&host={worker}"


@pytest.mark.parametrize("template", [
    "", "https://logs.example.org/files{path}", "http://{worker}.logs.example.org:8080/{kind}/{id}{path}",
    "https://grafana.example.org/explore?left=%7B%22expr%22:%22{{file=%5C%22{path}%5C%22}}%22%7D",
])
def test_usable_templates_are_accepted(template):
    assert template_problems(template) == []


@pytest.mark.parametrize(("template", "problem"), [
    ("javascript:alert({path})", "it does not make an http:// or https:// URL with a host"),
    ("ftp://files.example.org{path}", "it does not make an http:// or https:// URL with a host"),
    ("https:///{path}", "it does not make an http:// or https:// URL with a host"),
    ("{path}", "it does not make an http:// or https:// URL with a host"),
    ("https://logs.example.org/", "it has no {path}"),
    ("https://logs.example.org/{user}{path}", "{user} is not a placeholder (use {path}, {kind}, {id}, {worker})"),
    ("https://logs.example.org/{path.__class__}", "{path.__class__} is not a placeholder"),
    ("https://logs.example.org/{path[0]}", "{path[0]} is not a placeholder"),
    ("https://logs.example.org/{path:>99999}", "{path} may have no format spec or conversion"),
    ("https://logs.example.org/{path!r}", "{path} may have no format spec or conversion"),
    ("https://logs.example.org/{path", "it cannot be read as a template"),
    ("https://logs.example.org/ {path}", "it contains spaces or control characters"),
])
def test_unusable_templates_are_refused_with_the_reason(template, problem):
    assert template_problems(template)[0].startswith(problem)


def test_a_refused_template_stops_start_up(settings):
    settings.LOG_URL_TEMPLATE = "javascript:{path}"

    [error] = log_url_template()
    with pytest.raises(SystemCheckError, match="opsdb.E020"):
        call_command("check")
    with pytest.raises(ImproperlyConfigured, match="LOG_URL_TEMPLATE 'javascript:{path}' cannot be used"):
        refuse_unsafe_start()
    assert error.id == "opsdb.E020"


def test_no_template_means_no_links(settings):
    settings.LOG_URL_TEMPLATE = ""

    assert log_url("/var/log/opsdb/t-1.log", kind="transfer", id=1) == ""


def test_log_urls_encode_what_they_carry(settings):
    settings.LOG_URL_TEMPLATE = TEMPLATE

    url = log_url("/var/log/opsdb/a b?#%.log", kind="transfer", id=12, worker="evil.org/x?y#")

    assert url == ("https://logs.example.org/files/var/log/opsdb/a%20b%3F%23%25.log?job=transfer-12"
                   "&host=evil.org%2Fx%3Fy%23")


@pytest.mark.parametrize("path", ["/var/log/../../etc/passwd", "./x.log", "/var/log/a\nb.log", "/var/log/a\x7f"])
def test_paths_with_dot_segments_or_control_characters_are_never_linked(settings, path):
    settings.LOG_URL_TEMPLATE = TEMPLATE

    assert log_url(path, kind="transfer", id=1) == ""


def failed_transfer():
    job = job_claim(job=f.DataTransferFactory(), worker="ccat-dtn-1")
    job, _ = job_fail(job=job, lease_token=job.lease_token, error="timeout", log_path="/var/log/opsdb/t-7.log")
    return job


def test_admin_links_the_log_file_when_configured(client, settings):
    settings.LOG_URL_TEMPLATE = TEMPLATE
    client.force_login(f.operator())
    job = failed_transfer()

    page = client.get(reverse("admin:transfers_datatransfer_change", args=[job.pk])).content.decode()

    assert (f'<a class="log-link" href="https://logs.example.org/files/var/log/opsdb/t-7.log?job=transfer-{job.pk}'
            '&amp;host=ccat-dtn-1" target="_blank" rel="noopener noreferrer">/var/log/opsdb/t-7.log</a>') in page


def test_admin_shows_the_log_path_as_text_to_copy_without_a_template(client, settings):
    settings.LOG_URL_TEMPLATE = ""
    client.force_login(f.operator())
    job = failed_transfer()

    page = client.get(reverse("admin:transfers_datatransfer_change", args=[job.pk])).content.decode()
    lines = client.get(reverse("admin:opsdb_datatransferlog_changelist")).content.decode()

    assert '<code class="log-path" style="user-select: all;"' in page
    assert "log-link" not in page and "log-link" not in lines
    assert ">/var/log/opsdb/t-7.log</code>" in lines


def test_api_gives_the_log_url_or_null(settings):
    job = failed_transfer()
    client = operator_client()

    settings.LOG_URL_TEMPLATE = ""
    without = client.get(f"/api/v1/transfers/{job.pk}/").json()["log_url"]
    settings.LOG_URL_TEMPLATE = TEMPLATE
    with_template = client.get(f"/api/v1/transfers/{job.pk}/").json()["log_url"]
    lines = client.get("/api/v1/transfer-logs/").json()["results"]

    assert without is None
    assert with_template == f"https://logs.example.org/files/var/log/opsdb/t-7.log?job=transfer-{job.pk}&host=ccat-dtn-1"
    assert [(line["log_path"], line["log_url"]) for line in lines if line["log_path"]] == [(
        "/var/log/opsdb/t-7.log",
        f"https://logs.example.org/files/var/log/opsdb/t-7.log?job=transfer-{job.pk}&host=ccat-dtn-1",
    )]


def test_scientists_page_links_or_copies_the_log(client, settings):
    alice = f.scientist("alice")
    processing = f.DataLocationFactory(location_type="PROCESSING")
    package = f.RawDataPackageFactory()
    archive = f.DataLocationFactory(site=processing.site, location_type="LONG_TERM_ARCHIVE")
    f.RawDataPackageCopyFactory(raw_package=package, location=archive)
    job = staging_job_create(owner=alice, raw_packages=[package], destination_location=processing)
    job = job_claim(job=job, worker="cologne-dtn-1")
    job, _ = job_fail(job=job, lease_token=job.lease_token, error="timeout", log_path="/logs/stage-1.log")
    client.force_login(alice)
    url = reverse("staging:request-detail", args=[job.pk])

    settings.LOG_URL_TEMPLATE = ""
    copied = client.get(url).content.decode()
    settings.LOG_URL_TEMPLATE = "https://logs.example.org{path}"
    linked = client.get(url).content.decode()

    assert '<code class="log-path">/logs/stage-1.log</code> <button type="button" class="small link" ' \
           'data-copy-text="/logs/stage-1.log">Copy</button>' in copied
    assert '<a class="log-link" href="https://logs.example.org/logs/stage-1.log"' in linked
