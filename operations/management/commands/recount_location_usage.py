"""python manage.py recount_location_usage: count the bytes present at each location again from the copy tables."""

from django.core.management.base import BaseCommand

from operations.usage import recount
from opsdb.models import DataLocation
from opsdb.planning import human_bytes


class Command(BaseCommand):
    help = (
        "Count the bytes present at each location again from the copy tables (one sum over each; "
        "writes to the copy tables wait meanwhile). Needed only after statements that skipped the "
        "triggers that keep the count (session_replication_role = replica, as bulk loads do)."
    )

    def handle(self, *args, **options):
        used = recount()
        for location in DataLocation.objects.select_related("site").order_by("site__name", "name"):
            self.stdout.write(f"{location}: {human_bytes(used.get(location.pk, 0))}")
