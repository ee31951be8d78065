"""Sign-in to the admin and to the scientists' pages is throttled (django-axes), and worker accounts
cannot sign in to any page, with or without a password."""

import pytest
from django.urls import reverse

from tests import factories as f

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's
LOGIN_PAGES = {"admin": "/admin/login/", "scientists": "/accounts/login/"}


def sign_in(client, page: str, username: str, password: str, address: str = "192.0.2.10"):
    return client.post(LOGIN_PAGES[page], {"username": username, "password": password}, REMOTE_ADDR=address)


@pytest.mark.parametrize("page", sorted(LOGIN_PAGES))
def test_sign_in_is_refused_after_five_wrong_passwords_even_with_the_right_one(client, settings, page):
    user = f.operator() if page == "admin" else f.scientist()
    answers = [sign_in(client, page, user.username, "wrong").status_code for _ in range(settings.AXES_FAILURE_LIMIT)]

    response = sign_in(client, page, user.username, PASSWORD)

    assert answers == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_lockout_is_per_user_and_address(client, settings):
    user = f.scientist()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "scientists", user.username, "wrong")

    response = sign_in(client, "scientists", user.username, PASSWORD, address="198.51.100.7")

    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


def test_a_successful_sign_in_resets_the_count(client, settings):
    user = f.scientist()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in(client, "scientists", user.username, "wrong")
    assert sign_in(client, "scientists", user.username, PASSWORD).status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in(client, "scientists", user.username, "wrong")

    assert sign_in(client, "scientists", user.username, PASSWORD).status_code == 302


@pytest.mark.parametrize("page", sorted(LOGIN_PAGES))
def test_worker_account_with_a_password_cannot_sign_in(client, page):
    worker = f.worker_user("dtn")
    worker.is_staff = True  # even given admin access by mistake
    worker.save()

    response = sign_in(client, page, "dtn", PASSWORD)

    assert response.status_code == 200  # the form again
    assert "_auth_user_id" not in client.session


def test_signed_in_people_keep_their_session(client):
    client.force_login(f.operator())

    assert client.get(reverse("admin:index")).status_code == 200
