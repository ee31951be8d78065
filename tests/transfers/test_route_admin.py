"""Route state in the operator admin: the route's page, pause/resume with a reason, Needs attention."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from tests import factories as f
from transfers.choices import RouteState
from transfers.models import DataTransferRoute
from transfers.services import route_pause

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client):
    client.force_login(f.operator())
    return client


def change_url(route) -> str:
    return reverse("admin:transfers_datatransferroute_change", args=[route.pk])


def state_url(route) -> str:
    return reverse("admin:transfers_datatransferroute_state", args=[route.pk])


def test_pause_and_resume_from_the_route_page_show_in_its_history(operator_client):
    route = f.RouteFactory()

    paused = operator_client.post(state_url(route), {"action": "pause", "reason": "link maintenance"})
    route.refresh_from_db()
    paused_state = route.state
    operator_client.post(state_url(route), {"action": "resume", "reason": "maintenance over"})
    page = operator_client.get(change_url(route)).content.decode()

    route.refresh_from_db()
    assert paused.status_code == 302
    assert paused_state == RouteState.PAUSED_MANUAL
    assert (route.state, route.state_reason, route.state_by) == (RouteState.ACTIVE, "maintenance over", "operator")
    history = page[page.index("Transition history"):]
    assert history.index("operator: maintenance over") < history.index("operator: link maintenance")
    assert "route " in page and "paused by operator: link maintenance" in page  # the log line on the route


def test_pause_without_reason_changes_nothing_and_says_why(operator_client):
    route = f.RouteFactory()

    response = operator_client.post(state_url(route), {"action": "pause", "reason": " "}, follow=True)

    route.refresh_from_db()
    assert route.state == RouteState.ACTIVE
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "Not paused: Say why (it is shown to other operators and in the route's history)."
    ]


def test_resume_of_an_active_route_is_refused_with_a_message(operator_client):
    route = f.RouteFactory()

    response = operator_client.post(state_url(route), {"action": "resume", "reason": "x"}, follow=True)

    assert [str(m) for m in get_messages(response.wsgi_request)] == ["Not resumed: the route is active."]


def test_route_page_shows_state_reason_and_offers_the_allowed_actions(operator_client):
    route = f.RouteFactory()
    route_pause(route=route, reason="provider incident #4711", by=f.operator("alice"))

    page = operator_client.get(change_url(route)).content.decode()

    assert "Paused (by an operator)" in page
    assert "by alice" in page and "Why: provider incident #4711" in page
    assert 'value="resume"' in page and 'value="pause"' not in page


def test_state_column_and_filter_on_the_route_list(operator_client):
    paused, active = f.RouteFactory(), f.RouteFactory()
    route_pause(route=paused, reason="maintenance", by=f.operator("alice"))
    url = reverse("admin:transfers_datatransferroute_changelist")

    listed = operator_client.get(url, {"state__exact": RouteState.PAUSED_MANUAL})
    both = operator_client.get(url, {"state__in": "PAUSED_AUTO,PAUSED_MANUAL"})

    assert [r.pk for r in listed.context["cl"].result_list] == [paused.pk]
    assert [r.pk for r in both.context["cl"].result_list] == [paused.pk]
    assert "maintenance" in listed.content.decode()
    assert active.pk not in [r.pk for r in both.context["cl"].result_list]


def test_needs_attention_lists_paused_routes_with_who_and_why(operator_client):
    route = f.RouteFactory()
    route_pause(route=route, reason="provider incident #4711", by=f.operator("alice"))

    page = operator_client.get(reverse("admin:index")).content.decode()

    assert "Paused routes (their transfers are held)" in page
    assert f"{route}: paused (by an operator) since" in page.replace("&gt;", ">")
    assert "by alice — provider incident #4711" in page
    assert change_url(route) in page


def test_failed_save_keeps_the_saved_name_in_heading_and_breadcrumb(operator_client):
    route = f.RouteFactory()
    saved_name = str(route)
    data = {
        "origin_site": route.origin_site_id, "destination_site": route.origin_site_id,  # invalid: same site
        "route_type": route.route_type, "method": route.method, "active": "on", "max_concurrent": 4,
        "allow_relay_fallback": "on",
        "historicaldatatransferroute-TOTAL_FORMS": 0, "historicaldatatransferroute-INITIAL_FORMS": 0,
    }

    response = operator_client.post(change_url(route), data)

    content = response.content.decode()
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert response.context["original"].destination_site_id == route.destination_site_id
    invalid_name = str(DataTransferRoute(origin_site=route.origin_site, destination_site=route.origin_site,
                                         route_type=route.route_type, method=route.method))
    assert saved_name.replace("→", "&rarr;") in content or saved_name in content
    assert invalid_name not in content
