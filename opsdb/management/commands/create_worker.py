"""``manage.py create_worker NAME --site SITE [--site ...]``: a worker account, its API token and its sites."""

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from rest_framework.authtoken.models import Token

from opsdb import roles
from opsdb.models import Site, WorkerProfile


class Command(BaseCommand):
    help = "Create a worker account (workers group, no admin access) and print its API token."

    def add_arguments(self, parser):
        parser.add_argument("name", help="User name of the worker account, e.g. cologne-dtn-1.")
        parser.add_argument("--site", action="append", default=[], dest="sites",
                            help="A site whose jobs it may claim (repeat for more; none = every site).")

    @transaction.atomic
    def handle(self, *args, name: str, sites: list[str], **options):
        if User.objects.filter(username=name).exists():
            raise CommandError(f"A user named {name!r} already exists.")
        found = {site.name: site for site in Site.objects.filter(name__in=sites)}
        unknown = sorted(set(sites) - found.keys())
        if unknown:
            raise CommandError(f"Unknown site(s): {', '.join(unknown)}.")
        user = User.objects.create_user(username=name, is_staff=False)  # no usable password: token only
        user.groups.add(Group.objects.get(name=roles.WORKERS))
        profile = WorkerProfile.objects.create(user=user)
        profile.sites.set(found.values())
        token = Token.objects.create(user=user)
        if not sites:
            self.stderr.write(f"{name} may claim jobs at every site (no --site given).")
        self.stdout.write(token.key)
