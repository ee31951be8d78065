"""python manage.py explain KIND ID: why a job is where it is, in plain words, with since when."""

import json

from django.core.management.base import BaseCommand, CommandError
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from opsdb.explain import explain_jobs
from opsdb.explanation import age
from opsdb.numbers import parse_id
from opsdb.registry import job_kinds


class Command(BaseCommand):
    help = "Say why a job waits, what it waits for, or what an operator must do (the job's explanation)."

    def add_arguments(self, parser):
        parser.add_argument("kind", help="The job kind: " + ", ".join(job_kinds.kinds()) + ".")
        parser.add_argument("id", help="The job's id.")
        parser.add_argument("--json", action="store_true", help="Print the explanation as JSON (code, message, "
                            "since), as the API gives it.")

    def handle(self, *args, kind: str, id: str, json: bool = False, **options):
        handler = job_kinds.get(kind)
        if handler is None:
            raise CommandError(f"No job kind {kind!r}: use one of {', '.join(job_kinds.kinds())}.")
        pk = parse_id(id)
        job = handler.model.objects.filter(pk=pk).first() if pk is not None else None
        if job is None:
            raise CommandError(f"No {kind} job with id {id!r}.")
        now = timezone.now()
        explanation = explain_jobs([job], now=now)[0]
        if json:
            self.stdout.write(_json(explanation.as_dict()))
            return
        self.stdout.write(f"{kind} #{job.pk} {job}: {job.get_status_display()}")
        self.stdout.write(f"Why: {explanation.message}")
        if explanation.since is not None:
            since = timezone.localtime(explanation.since)
            self.stdout.write(f"Since: {since:%Y-%m-%d %H:%M:%S %Z} ({age(explanation.since, now)} ago)")
        self.stdout.write(f"Code: {explanation.code}")
        if job.log_path:
            self.stdout.write(f"Log: {job.log_path}")


def _json(value) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False)
