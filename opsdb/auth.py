"""Who may sign in to the pages: people, not worker accounts (workers use API tokens only)."""

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend

from opsdb import roles


class PeopleOnlyBackend(ModelBackend):
    """Django's model backend, refusing accounts in the workers group even if one was given a password."""

    def user_can_authenticate(self, user) -> bool:
        return super().user_can_authenticate(user) and not user.groups.filter(name=roles.WORKERS).exists()

    def get_user(self, user_id):
        """Sessions come only from ``authenticate``: reading one back checks ``is_active`` without the group query."""
        user = get_user_model()._default_manager.filter(pk=user_id).first()
        if user is None:
            return None
        return user if ModelBackend.user_can_authenticate(self, user) else None
