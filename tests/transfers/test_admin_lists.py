"""The admin lists of transfers and staging: every filter choice they offer opens."""

from html.parser import HTMLParser

import pytest
from django.contrib import admin

from opsdb.choices import JobStatus
from tests import factories as f
from tests.opsdb.test_admin import ROW_MAKERS, admin_url
from transfers.models import DataTransfer

pytestmark = pytest.mark.django_db

LIST_APPS = ("transfers", "staging")
FILTERED_MODELS = sorted(
    (m for m, model_admin in admin.site._registry.items()
     if m._meta.app_label in LIST_APPS and model_admin.list_filter),
    key=lambda m: m._meta.label,
)


class FilterLinks(HTMLParser):
    """Every choice link of every list filter on a changelist: (filter title, query string)."""

    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._title: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "details" and "data-filter-title" in attrs:
            self._title = attrs["data-filter-title"]
        elif tag == "a" and self._title is not None:
            self.links.append((self._title, attrs.get("href", "")))

    def handle_endtag(self, tag):
        if tag == "details":
            self._title = None


@pytest.fixture
def operator_client(client):
    client.force_login(f.operator())
    return client


@pytest.mark.parametrize("model", FILTERED_MODELS, ids=lambda m: m._meta.label)
def test_every_filter_choice_offered_opens(operator_client, model):
    ROW_MAKERS[model._meta.label]()
    url = admin_url(model, "changelist")
    links = FilterLinks()
    links.feed(operator_client.get(url).content.decode())

    refused = [(title, href) for title, href in links.links
               if operator_client.get(url + href).status_code != 200]

    assert links.links
    assert refused == []


def test_transfers_filtered_by_unpack_status(operator_client):
    pending = f.DataTransferUnpackFactory().transfer
    unpacked = f.DataTransferUnpackFactory()
    type(unpacked).objects.filter(pk=unpacked.pk).update(status=JobStatus.UNPACKED)

    response = operator_client.get(admin_url(DataTransfer, "changelist"), {"unpack__status__exact": "PENDING"})

    assert response.status_code == 200
    assert [t.pk for t in response.context["cl"].result_list] == [pending.pk]
