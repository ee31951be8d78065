"""python manage.py plan --dry-run: print what the next scheduler tick would create, changing nothing."""

import logging

from django.core.management.base import BaseCommand, CommandError

from opsdb.scheduler import plan_dry_run


class Command(BaseCommand):
    help = (
        "Show what the scheduler's next tick would do (bundles, transfers, unpacks, archive transfers, "
        "expired leases, staging cleanup). Runs the passes in a transaction that is rolled back."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Required: only show the plan.")

    def handle(self, *args, dry_run: bool, **options):
        if not dry_run:
            raise CommandError("plan only previews; pass --dry-run (run_scheduler --once acts)")
        logging.getLogger("opsdb.scheduler").setLevel(logging.WARNING)  # the lines are printed below
        results = plan_dry_run()
        for result in results:
            for line in result.lines:
                self.stdout.write(line)
        total = sum(r.count for r in results)
        summary = ", ".join(f"{r.name} {r.count}" for r in results)
        self.stdout.write(f"Next tick would handle {total} items ({summary}); nothing was changed.")
