"""python manage.py run_scheduler [--interval S] [--once]: the scheduler loop, or one tick for cron."""

import signal

from django.core.management.base import BaseCommand, CommandError

from opsdb.scheduler import Scheduler


class Command(BaseCommand):
    help = (
        "Run the scheduler's passes (lease recovery, bundling, routing, unpacking, archiving, staging "
        "cleanup) in a loop, as the single leader among schedulers; --once runs one tick (cron)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=30.0, help="Seconds between ticks (default 30).")
        parser.add_argument("--once", action="store_true", help="Run one tick and exit (for cron).")

    def handle(self, *args, interval: float, once: bool, **options):
        if interval <= 0:
            raise CommandError("--interval must be a positive number of seconds")
        scheduler = Scheduler(interval=interval)
        if once:
            try:
                results = scheduler.tick()
            finally:
                scheduler.lock.release()
            if results is None:
                self.stdout.write("Another scheduler holds the leader lock; nothing done.")
            else:
                self.stdout.write(f"Done: {', '.join(f'{r.name} {r.count}' for r in results)}.")
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: scheduler.stop())
        scheduler.run_forever()
