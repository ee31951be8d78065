"""``manage.py create_worker NAME --site SITE [--site ...]``: a worker account, its API token and its sites.

The token is printed once and stored only as a digest. For an existing worker, ``--rotate``
revokes its tokens and prints a new one, ``--revoke`` revokes them all (the worker stops at once
in this server process and within ``API_TOKEN_CACHE_SECONDS`` in the others).
"""

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from opsdb import roles
from opsdb.models import Site, WorkerProfile
from opsdb.tokens import api_token_create, api_tokens_revoke_all


class Command(BaseCommand):
    help = "Create a worker account (workers group, no password, no admin access) and print its API token."

    def add_arguments(self, parser):
        parser.add_argument("name", help="User name of the worker account, e.g. cologne-dtn-1.")
        parser.add_argument("--site", action="append", default=[], dest="sites",
                            help="A site whose jobs it may claim (repeat for more; none = every site).")
        parser.add_argument("--token-name", default="", help="What the token is for, e.g. the host it runs on.")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--rotate", action="store_true",
                            help="Existing worker: revoke its tokens and print a new one (--site replaces its sites).")
        action.add_argument("--revoke", action="store_true", help="Existing worker: revoke every token it has.")

    @transaction.atomic
    def handle(self, *args, name: str, sites: list[str], token_name: str, rotate: bool, revoke: bool, **options):
        found = self._sites(sites)
        if rotate or revoke:
            user = self._existing_worker(name)
            revoked = api_tokens_revoke_all(user=user)
            self.stderr.write(f"Revoked {revoked} token(s) of {name}.")
            if revoke:
                return
            if sites:
                WorkerProfile.objects.get_or_create(user=user)[0].sites.set(found.values())
        else:
            user = self._new_worker(name, found.values())
            if not sites:
                self.stderr.write(f"{name} may claim jobs at every site (no --site given).")
        _, token = api_token_create(user=user, name=token_name)
        self.stdout.write(token)

    def _sites(self, names: list[str]) -> dict[str, Site]:
        found = {site.name: site for site in Site.objects.filter(name__in=names)}
        unknown = sorted(set(names) - found.keys())
        if unknown:
            raise CommandError(f"Unknown site(s): {', '.join(unknown)}.")
        return found

    def _new_worker(self, name: str, sites) -> User:
        if User.objects.filter(username=name).exists():
            raise CommandError(f"A user named {name!r} already exists (--rotate gives an existing worker a new token).")
        user = User.objects.create_user(username=name, is_staff=False)  # no usable password: token only
        user.groups.add(Group.objects.get(name=roles.WORKERS))
        WorkerProfile.objects.create(user=user).sites.set(sites)
        return user

    def _existing_worker(self, name: str) -> User:
        user = User.objects.filter(username=name, groups__name=roles.WORKERS).first()
        if user is None:
            raise CommandError(f"No worker account named {name!r}.")
        return user


