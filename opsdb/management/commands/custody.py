"""python manage.py custody NAME: where a raw package is, how safe it is, and the work pending on it."""

from django.core.management.base import BaseCommand, CommandError

from opsdb.custody import custody_lines, raw_package_custody
from opsdb.models import RawDataPackage

SUGGESTIONS = 10


class Command(BaseCommand):
    help = ("Show every copy of a raw package (location, status, path, verified checksum and time), its safe "
            "archive copies, the archives it must reach, its time to safety and the work pending on it.")

    def add_arguments(self, parser):
        parser.add_argument("name", help="The package's name (exactly; a prefix lists the names that start so).")

    def handle(self, *args, name: str, **options):
        package = RawDataPackage.objects.filter(name=name).first()
        if package is None:
            starting = list(RawDataPackage.objects.filter(name__startswith=name).order_by("name")
                            .values_list("name", flat=True)[: SUGGESTIONS + 1])
            if not starting:
                raise CommandError(f"No raw package is named {name!r}, and no name starts with it.")
            more = " …" if len(starting) > SUGGESTIONS else ""
            raise CommandError(f"No raw package is named {name!r}. Names that start so: "
                               f"{', '.join(starting[:SUGGESTIONS])}{more}")
        for line in custody_lines(raw_package_custody(package)):
            self.stdout.write(line)
