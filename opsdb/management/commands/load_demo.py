"""``manage.py load_demo``: the demo topology, catalogue with real files, and accounts (idempotent)."""

from django.core.management.base import BaseCommand

from opsdb.demo import demo_root, load_demo

LOGIN_URLS = "operators: http://127.0.0.1:8000/admin/  ·  scientists: http://127.0.0.1:8000/"


class Command(BaseCommand):
    help = "Load the demo sites, routes, observations (with real files under var/demo) and accounts. Idempotent."

    def handle(self, *args, **options):
        report = load_demo()
        if not report.changed:
            self.stdout.write(f"Demo data already loaded: nothing changed ({demo_root()}).")
        else:
            made = ", ".join(f"{n} {what}" for what, n in report.created.items()) or "no rows"
            self.stdout.write(self.style.SUCCESS(f"Demo data loaded: created {made}; "
                                                 f"wrote {report.files_written} file(s) under {demo_root()}."))
        self.stdout.write(f"Demo files: {report.bytes_on_disk / 1e6:.1f} MB.  Log in — {LOGIN_URLS}")
        if report.secrets:
            self.stdout.write(self.style.WARNING("New demo credentials (shown only this once):"))
            for username, password, token in report.secrets:
                parts = [f"password {password}"] if password else []
                parts += [f"API token {token}"] if token else []
                self.stdout.write(f"  {username:<16} " + "  ".join(parts))
