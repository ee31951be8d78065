"""python manage.py explain KIND ID: why a job is where it is, in plain words, with since when.

``explain raw ID_OR_NAME``: why a raw package is in no transfer package yet (waiting for a bundle).
"""

import json

from django.core.management.base import BaseCommand, CommandError
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from opsdb.explain import explain_jobs, explain_raw_packages
from opsdb.explanation import Explanation, age
from opsdb.models import RawDataPackage
from opsdb.numbers import parse_id
from opsdb.registry import job_kinds

RAW = "raw"


class Command(BaseCommand):
    help = "Say why a job waits, what it waits for, or what an operator must do (the job's explanation)."

    def add_arguments(self, parser):
        parser.add_argument("kind", help="The job kind: " + ", ".join(job_kinds.kinds()) + "; or raw (a raw package).")
        parser.add_argument("id", help="The job's id (a raw package: its id or name).")
        parser.add_argument("--json", action="store_true", help="Print the explanation as JSON (code, message, "
                            "since), as the API gives it.")

    def handle(self, *args, kind: str, id: str, json: bool = False, **options):
        if kind == RAW:
            return self.raw_package(id, as_json=json)
        handler = job_kinds.get(kind)
        if handler is None:
            raise CommandError(f"No job kind {kind!r}: use one of {', '.join(job_kinds.kinds())}, or {RAW}.")
        pk = parse_id(id)
        job = handler.model.objects.filter(pk=pk).first() if pk is not None else None
        if job is None:
            raise CommandError(f"No {kind} job with id {id!r}.")
        now = timezone.now()
        explanation = explain_jobs([job], now=now)[0]
        if json:
            self.stdout.write(_json(explanation.as_dict()))
            return None
        self.stdout.write(f"{kind} #{job.pk} {job}: {job.get_status_display()}")
        self.say(explanation, now)
        if job.log_path:
            self.stdout.write(f"Log: {job.log_path}")
        return None

    def raw_package(self, ref: str, *, as_json: bool) -> None:
        pk = parse_id(ref)
        package = (RawDataPackage.objects.filter(pk=pk).first() if pk is not None else None) \
            or RawDataPackage.objects.filter(name=ref).first()
        if package is None:
            raise CommandError(f"No raw package with id or name {ref!r}.")
        now = timezone.now()
        explanation = explain_raw_packages([package], now=now).get(package.pk)
        if as_json:
            self.stdout.write(_json(explanation.as_dict() if explanation else None))
            return
        self.stdout.write(f"raw package #{package.pk} {package}")
        if explanation is None:
            self.stdout.write("Why: it waits for no bundle (it is in one, or at no buffer that bundles); "
                              f"see `manage.py custody {package.name}` for its copies and pending work.")
            return
        self.say(explanation, now)

    def say(self, explanation: Explanation, now) -> None:
        self.stdout.write(f"Why: {explanation.message}")
        if explanation.since is not None:
            since = timezone.localtime(explanation.since)
            self.stdout.write(f"Since: {since:%Y-%m-%d %H:%M:%S %Z} ({age(explanation.since, now)} ago)")
        self.stdout.write(f"Code: {explanation.code}")


def _json(value) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False)
