"""The work protocol of DESIGN.md and docs/worker-protocol.md: claim, heartbeat, complete, fail, log.

Generic over the job-kind registry (``opsdb.work``); every status change goes through
``opsdb.services``. Errors: 400 field errors, 404 for unknown kinds and for jobs a worker may
not see, 409 ``{"detail", "status"}`` for leases not held and transitions not allowed.
"""

import threading

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from opsdb import batches, services
from opsdb.api.exceptions import validation_error_body
from opsdb.api.fields import IntegerField, LogPathField
from opsdb.api.parsers import JSONParser
from opsdb.api.permissions import IsWorker, allowed_site_ids
from opsdb.choices import JobKind, LogLevel, TransferMethod
from opsdb.leases import ERROR_MAX_LENGTH
from opsdb.models import LOG_MESSAGE_MAX_LENGTH, Site
from opsdb.prepared import PreparedQuery
from opsdb.registry import job_kinds
from opsdb.work import job_payload

MAX_ID = 2**63 - 1
LEASE_TOKEN = serializers.CharField(max_length=64)


def max_lease_seconds() -> int:
    return settings.JOB_MAX_LEASE_SECONDS


class Claim(serializers.Serializer):
    worker = serializers.CharField(max_length=200, help_text="The worker's name, e.g. cologne-dtn-1.")
    kinds = serializers.ListField(child=serializers.ChoiceField(choices=JobKind.choices), required=False,
                                  allow_empty=False,
                                  max_length=len(JobKind.choices), help_text="Default: every kind.")
    sites = serializers.ListField(child=serializers.CharField(max_length=50), required=False, max_length=100,
                                  allow_empty=False,
                                  help_text="Site names; default: every site the worker may work at.")
    methods = serializers.ListField(child=serializers.ChoiceField(choices=TransferMethod.choices), required=False,
                                    allow_empty=False,
                                    max_length=len(TransferMethod.choices), help_text="Transfer methods it can do.")
    lease_seconds = IntegerField(min_value=1, required=False)
    request_id = serializers.RegexField(
        r"^[A-Za-z0-9._:-]{1,64}$", required=False,
        help_text="The worker's id of this claim (e.g. a UUID), the same when it repeats the claim after a lost "
        "answer: a repeat gets the job (and lease) the first one took, while the lease is held.",
    )

    max_jobs = IntegerField(
        min_value=1, required=False,
        help_text="Claim up to this many jobs at once (at most WORK_BATCH_MAX_JOBS, default 100): the answer is "
        '{"jobs": [...]} instead of one job. Without it, one job.')

    def validate_lease_seconds(self, value: int) -> int:
        if value > max_lease_seconds():
            raise serializers.ValidationError(f"At most {max_lease_seconds()} seconds.")
        return value

    def validate_max_jobs(self, value: int) -> int:
        if value > settings.WORK_BATCH_MAX_JOBS:
            raise serializers.ValidationError(f"At most {settings.WORK_BATCH_MAX_JOBS} jobs per claim.")
        return value

    def validate_kinds(self, kinds: list[str]) -> list[str]:
        unserved = [kind for kind in kinds if kind not in job_kinds]
        if unserved:
            raise serializers.ValidationError(f"No such job kind is served here: {', '.join(unserved)}.")
        return kinds

    def validate_sites(self, names: list[str]) -> list[int]:
        found = dict(Site.objects.filter(name__in=names).values_list("name", "pk"))
        unknown = sorted(set(names) - found.keys())
        if unknown:
            raise serializers.ValidationError(f"Unknown site(s): {', '.join(unknown)}.")
        return sorted(set(found.values()))


class ClaimedJob(serializers.Serializer):
    """The fields every job has; each kind adds its own (docs/worker-protocol.md)."""

    kind = serializers.ChoiceField(choices=JobKind.choices)
    id = IntegerField()
    lease_token = serializers.CharField()
    lease_expires_at = serializers.DateTimeField()
    attempt = IntegerField(help_text="1 for the first try.")
    max_attempts = IntegerField()
    site = serializers.CharField(help_text="The site the job is at.")


class ClaimedJobs(serializers.Serializer):
    """The answer to a claim with ``max_jobs``: 1 to ``max_jobs`` jobs, each with its own lease."""

    jobs = ClaimedJob(many=True)


class LeaseReport(serializers.Serializer):
    lease_token = LEASE_TOKEN


class Heartbeat(LeaseReport):
    bytes_done = IntegerField(min_value=0, max_value=MAX_ID, required=False)
    lease_seconds = IntegerField(min_value=1, required=False)
    items_done = serializers.ListField(child=serializers.CharField(max_length=255), required=False,
                                       max_length=10000, help_text="Finished items (stage: raw package names).")
    resumed_from = serializers.IntegerField(
        min_value=0, max_value=MAX_ID, required=False,
        help_text="Bytes this attempt kept from an earlier attempt's partial data (0: it started from zero).")

    validate_lease_seconds = Claim.validate_lease_seconds


class HeartbeatResponse(serializers.Serializer):
    lease_expires_at = serializers.DateTimeField()


class CompleteReport(LeaseReport):
    log_path = LogPathField()


class FailReport(LeaseReport):
    error = serializers.CharField(max_length=65536, help_text=f"Kept to {ERROR_MAX_LENGTH} characters.")
    log_path = LogPathField()
    retryable = serializers.BooleanField(required=False, default=True)
    source_corrupt = serializers.BooleanField(
        required=False, default=False,
        help_text="transfer and unpack only: the stored copy the job read (the transfer's source, the archive to "
        "unpack) does not match its recorded checksum. It is taken out of service (MISMATCH) and fetched again "
        "from a good copy; the job waits for it (it is retried then, not against the bad copy).")


class LogEntry(LeaseReport):
    level = serializers.ChoiceField(choices=LogLevel.choices)
    message = serializers.CharField(max_length=LOG_MESSAGE_MAX_LENGTH,
                                    help_text="Short; details go to the log file at log_path.")
    log_path = LogPathField()


class JobState(serializers.Serializer):
    kind = serializers.ChoiceField(choices=JobKind.choices)
    id = IntegerField()
    status = serializers.CharField()
    attempts = IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class Conflict(serializers.Serializer):
    detail = serializers.CharField()
    status = serializers.CharField(required=False, help_text="The job's current status.")


def job_state(kind: str, job) -> dict:
    return {"kind": kind, "id": job.pk, "status": job.status, "attempts": job.attempts,
            "next_attempt_at": job.next_attempt_at, "finished_at": job.finished_at}


_serializers = threading.local()


def validated(serializer_class, request) -> dict:
    """The request's JSON object validated by ``serializer_class``; 400 with its field errors.

    One serializer per class and server thread validates every request (``run_validation``, as
    ``is_valid`` does): DRF deep-copies a serializer's fields each time one is made.
    """
    if not isinstance(request.data, dict):
        raise DRFValidationError({"non_field_errors": ["Send a JSON object."]})
    serializer = _serializers.__dict__.get(serializer_class)
    if serializer is None:
        serializer = _serializers.__dict__[serializer_class] = serializer_class()
    return serializer.run_validation(request.data)


KIND_PARAMETER = OpenApiParameter("kind", str, OpenApiParameter.PATH, enum=JobKind.values)
ID_PARAMETER = OpenApiParameter("id", int, OpenApiParameter.PATH)
ERRORS = {400: OpenApiResponse(description="Field errors."), 401: OpenApiResponse(description="No credentials."),
          403: OpenApiResponse(description="Not a worker."),
          404: OpenApiResponse(description="Unknown kind, or no such job at the worker's sites."),
          409: OpenApiResponse(Conflict, description="The lease is not held, or the transition is not allowed.")}


class WorkView(APIView):
    permission_classes = [IsAuthenticated, IsWorker]
    parser_classes = [JSONParser]  # the protocol speaks JSON only


class ClaimView(WorkView):
    @extend_schema(
        operation_id="work_claim", request=Claim,
        responses={200: PolymorphicProxySerializer(component_name="ClaimAnswer", serializers=[ClaimedJob, ClaimedJobs],
                                                   resource_type_field_name=None),
                   204: OpenApiResponse(description="No job to do."),
                   **{k: v for k, v in ERRORS.items() if k != 404 and k != 409}},
        description="Claim one job, or with max_jobs up to that many ({\"jobs\": [...]}). The answer carries "
        "everything needed to do each job; see docs/worker-protocol.md.",
    )
    def post(self, request):
        data = validated(Claim, request)
        site_ids = self.site_ids(request.user, data.get("sites"))
        request_id = data.get("request_id", "")
        wanted = data.get("kinds")
        handlers = [h for h in job_kinds if wanted is None or h.kind in wanted]
        if "max_jobs" in data:
            return self.claim_batch(request, data, handlers, site_ids)
        again = services.claimed_by_request(
            querysets={h.kind: h.model.objects.all() for h in handlers}, worker=data["worker"], user=request.user,
            request_id=request_id)
        if again is not None:
            handler = job_kinds[again[0]]
            return Response(payloads([(handler, again[1])])[0])
        claimed = services.claim_for_worker(
            handlers=handlers, worker=data["worker"], user=request.user, site_ids=site_ids,
            methods=data.get("methods"), lease_seconds=data.get("lease_seconds"), request_id=request_id,
        )
        if claimed is not None:
            handler, job = claimed
            return Response(payloads([(handler, job.pk)])[0])
        return Response(status=status.HTTP_204_NO_CONTENT)

    @staticmethod
    def claim_batch(request, data: dict, handlers: list, site_ids: list[int] | None) -> Response:
        """Up to ``max_jobs`` jobs; a repeat of the claim (same ``request_id``) gets the jobs it took, still held."""
        request_id = data.get("request_id", "")
        held = services.held_by_request(
            querysets={h.kind: h.model.objects.all() for h in handlers}, worker=data["worker"], user=request.user,
            request_id=request_id, limit=data["max_jobs"])
        if held:
            claimed = [(job_kinds[kind], pk) for kind, pk in held]
        else:
            claimed = [(handler, job.pk) for handler, job in batches.claim_jobs(
                handlers=handlers, worker=data["worker"], max_jobs=data["max_jobs"], user=request.user,
                site_ids=site_ids, methods=data.get("methods"), lease_seconds=data.get("lease_seconds"),
                request_id=request_id)]
        if not claimed:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response({"jobs": payloads(claimed)})

    @staticmethod
    def site_ids(user, requested: list[int] | None) -> list[int] | None:
        allowed = allowed_site_ids(user)
        if allowed is None:
            return requested
        if requested is None:
            return allowed
        outside = set(requested) - set(allowed)
        if outside:
            names = ", ".join(Site.objects.filter(pk__in=outside).order_by("name").values_list("name", flat=True))
            raise PermissionDenied(f"This worker may not work at: {names}.")
        return requested


def payloads(claimed: list[tuple]) -> list[dict]:
    """The payloads of claimed jobs ((handler, id), in claim order): one read (and its prefetches) per kind."""
    ids: dict[str, list[int]] = {}
    for handler, pk in claimed:
        ids.setdefault(handler.kind, []).append(pk)
    jobs = {}
    for kind, pks in ids.items():
        jobs.update({(kind, job.pk): job for job in _payload_query(job_kinds[kind])(pks)})
    return [job_payload(handler, jobs[handler.kind, pk]) for handler, pk in claimed]


_PREPARED: dict[tuple, PreparedQuery] = {}


def _payload_query(handler) -> PreparedQuery:
    """The kind's claimed jobs with what their payloads need (``handler.queryset()``), by ids; SQL made once."""
    key = ("payload", type(handler))
    if key not in _PREPARED:
        _PREPARED[key] = PreparedQuery(lambda pks: handler.queryset().filter(pk__in=pks))
    return _PREPARED[key]


def _report_query(handler, *, lock: bool, sites: bool) -> PreparedQuery:
    """The job a report is about (and what ``apply_result`` reads on it), optionally locked and at sites."""
    key = ("report", type(handler), lock, sites)
    if key not in _PREPARED:
        def build(pk: int, *site_ids: list[int]) -> QuerySet:
            queryset = handler.model.objects.filter(pk=pk)
            if lock:
                # OF self: only the job row is locked, not the shared rows (locations) joined for apply.
                queryset = queryset.select_related(*handler.result_related).select_for_update(of=("self",))
            if sites:
                queryset = handler.at_sites(queryset, site_ids[0])
            return queryset[:1]
        _PREPARED[key] = PreparedQuery(build)
    return _PREPARED[key]


class JobView(WorkView):
    """A report about one job: the job must exist and be at one of the worker's sites (else 404)."""

    def get_job(self, request, kind: str, pk: int, *, lock: bool = False):
        """The handler and the job; ``lock``: read under a row lock, with what ``apply_result`` needs.

        With ``lock`` the caller is in a transaction and passes ``locked=True`` to the service,
        which then does not read the row a second time.
        """
        handler = job_kinds.get(kind)
        if handler is None or pk > MAX_ID:
            raise Http404
        site_ids = allowed_site_ids(request.user)
        sites = [list(site_ids)] if site_ids is not None else []
        jobs = _report_query(handler, lock=lock, sites=bool(sites))(pk, *sites)
        if not jobs:
            raise Http404
        return handler, jobs[0]


class HeartbeatView(JobView):
    @extend_schema(operation_id="work_heartbeat", parameters=[KIND_PARAMETER, ID_PARAMETER],
                   request=Heartbeat, responses={200: HeartbeatResponse, **ERRORS},
                   description="Extend the lease and report progress.")
    def post(self, request, kind: str, pk: int):
        handler, job = self.get_job(request, kind, pk)
        data = validated(Heartbeat, request)
        job = services.job_heartbeat(job=job, lease_token=data["lease_token"], bytes_done=data.get("bytes_done"),
                                     lease_seconds=data.get("lease_seconds"), resumed_from=data.get("resumed_from"))
        if data.get("items_done"):
            handler.record_progress(job, data["items_done"])
        return Response({"lease_expires_at": job.lease_expires_at})


_COMPLETE_SERIALIZERS: dict[type, type] = {}


def complete_serializer(handler) -> type:
    """The ``complete`` body of a kind: lease_token and log_path plus the handler's result fields."""
    result = handler.result_serializer
    if result is None:
        return CompleteReport
    if result not in _COMPLETE_SERIALIZERS:
        name = f"{str(handler.kind).title()}Complete"
        _COMPLETE_SERIALIZERS[result] = type(name, (CompleteReport, result), {"__doc__": f"complete: {handler.kind}"})
    return _COMPLETE_SERIALIZERS[result]


def complete_serializers() -> list:
    return [complete_serializer(handler) for handler in job_kinds]


class CompleteView(JobView):
    @extend_schema(
        operation_id="work_complete", parameters=[KIND_PARAMETER, ID_PARAMETER],
        request=PolymorphicProxySerializer(component_name="WorkResult", serializers=complete_serializers,
                                           resource_type_field_name=None),
        responses={200: JobState, **ERRORS},
        description="Report success with the kind's result (see docs/worker-protocol.md). "
        "A repeat with the same lease token changes nothing and answers 200.",
    )
    def post(self, request, kind: str, pk: int):
        with transaction.atomic():
            handler, job = self.get_job(request, kind, pk, lock=True)
            data = validated(complete_serializer(handler), request)
            result = {k: v for k, v in (data if handler.result_serializer else request.data).items()
                      if k not in ("lease_token", "log_path")}
            job, _changed = services.job_complete(
                job=job, lease_token=data["lease_token"], by=request.user, log_path=data.get("log_path", ""),
                apply=lambda locked: handler.apply_result(locked, result), locked=True,
            )
        return Response(job_state(kind, job))


class FailView(JobView):
    @extend_schema(operation_id="work_fail", parameters=[KIND_PARAMETER, ID_PARAMETER], request=FailReport,
                   responses={200: JobState, **ERRORS},
                   description="Report a failed attempt: back to PENDING with backoff, or FAILED when spent.")
    def post(self, request, kind: str, pk: int):
        with transaction.atomic():
            _handler, job = self.get_job(request, kind, pk, lock=True)
            data = validated(FailReport, request)
            job, _changed = services.job_fail(
                job=job, lease_token=data["lease_token"], error=data["error"], log_path=data.get("log_path", ""),
                retryable=data["retryable"], by=request.user, locked=True, source_corrupt=data["source_corrupt"],
            )
        return Response(job_state(kind, job))


class LogView(JobView):
    @extend_schema(operation_id="work_log", parameters=[KIND_PARAMETER, ID_PARAMETER], request=LogEntry,
                   responses={201: OpenApiResponse(description="Logged."), **ERRORS},
                   description="A short log line about the job; the detail stays in the file at log_path.")
    def post(self, request, kind: str, pk: int):
        _handler, job = self.get_job(request, kind, pk)
        data = validated(LogEntry, request)
        if not job.lease_is_held(data["lease_token"]):
            raise services.LeaseConflict(job)  # only the worker holding the lease writes about the job
        services.write_job_log(job=job, message=data["message"], level=data["level"],
                               log_path=data.get("log_path", ""), worker=job.lease_holder)
        return Response(status=status.HTTP_201_CREATED)


class PartialJob(serializers.Serializer):
    kind = serializers.ChoiceField(choices=JobKind.choices)
    id = serializers.IntegerField(min_value=1, max_value=MAX_ID)


class PartialsQuery(serializers.Serializer):
    jobs = PartialJob(many=True, allow_empty=False, max_length=1000,
                      help_text="Jobs whose partial data (files an interrupted attempt left) a worker holds.")


class PartialVerdict(PartialJob):
    keep = serializers.BooleanField(help_text="False: no attempt will resume it; remove the files.")
    reason = serializers.CharField()


class PartialsAnswer(serializers.Serializer):
    jobs = PartialVerdict(many=True)


class PartialsView(WorkView):
    @extend_schema(
        operation_id="work_partials", request=PartialsQuery, responses={200: PartialsAnswer, 400: ERRORS[400],
                                                                        401: ERRORS[401], 403: ERRORS[403]},
        description="Which jobs' partial data a worker should keep: only a job that is running or waiting for "
        "its next attempt (and whose last attempt ended less than PARTIAL_MAX_AGE_SECONDS ago) keeps it. "
        "A job that is done, cancelled, failed for good, unknown, or not at the worker's sites does not.",
    )
    def post(self, request):
        data = validated(PartialsQuery, request)
        wanted: dict[str, set[int]] = {}
        for job in data["jobs"]:
            wanted.setdefault(job["kind"], set()).add(job["id"])
        site_ids = allowed_site_ids(request.user)
        now = timezone.now()
        verdicts = {}
        for kind, ids in wanted.items():
            for job in self.jobs(kind, ids, site_ids):
                verdicts[kind, job.pk] = job.partial_data_verdict(now)
        answer = []
        for job in data["jobs"]:
            keep, reason = verdicts.get((job["kind"], job["id"]), (False, "no such job at this worker's sites"))
            answer.append({"kind": job["kind"], "id": job["id"], "keep": keep, "reason": reason})
        return Response({"jobs": answer})

    @staticmethod
    def jobs(kind: str, ids: set[int], site_ids):
        """The jobs of one kind, only the fields a verdict needs: one query per kind asked about."""
        handler = job_kinds.get(kind)
        if handler is None:
            return []
        queryset = handler.model.objects.filter(pk__in=ids).only("pk", "status", "heartbeat_at", "updated_at")
        if site_ids is not None:
            queryset = handler.at_sites(queryset, site_ids)
        return queryset


class ReportItem(serializers.Serializer):
    """Which job an item of a batch report is about, and how it went; the rest is the single report's body."""

    kind = serializers.ChoiceField(choices=JobKind.choices)
    id = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    outcome = serializers.ChoiceField(choices=[batches.COMPLETE, batches.FAIL])


class ReportItemSchema(ReportItem):
    """One item: ``complete`` with the kind's result fields (as in work/<kind>/<id>/complete/), or ``fail``."""

    lease_token = LEASE_TOKEN
    log_path = LogPathField()
    error = serializers.CharField(required=False, help_text="fail: what went wrong (as in work/<kind>/<id>/fail/).")
    retryable = serializers.BooleanField(required=False, help_text="fail: as in work/<kind>/<id>/fail/.")
    source_corrupt = serializers.BooleanField(required=False, help_text="fail: as in work/<kind>/<id>/fail/.")


class BatchReport(serializers.Serializer):
    reports = serializers.ListField(
        allow_empty=False, help_text="1 to WORK_BATCH_MAX_JOBS (default 100) items, each answered on its own.")


class BatchReportSchema(serializers.Serializer):
    reports = ReportItemSchema(many=True)


class ReportAnswer(serializers.Serializer):
    index = IntegerField(help_text="The item's position in the request.")
    kind = serializers.CharField(allow_null=True)
    id = IntegerField(allow_null=True)
    code = IntegerField(help_text="200 done (or a repeat that changed nothing), 400 bad item, 404 no such job at "
                                  "the worker's sites, 409 lease not held.")
    status = serializers.CharField(required=False, help_text="The job's status (200, 409).")
    attempts = IntegerField(required=False)
    next_attempt_at = serializers.DateTimeField(allow_null=True, required=False)
    finished_at = serializers.DateTimeField(allow_null=True, required=False)
    detail = serializers.CharField(required=False)
    errors = serializers.DictField(required=False, help_text="400: the item's field errors.")


class BatchReportAnswer(serializers.Serializer):
    results = ReportAnswer(many=True)


class ReportView(WorkView):
    @extend_schema(
        operation_id="work_report", request=BatchReportSchema,
        responses={200: BatchReportAnswer, 400: ERRORS[400], 401: ERRORS[401], 403: ERRORS[403]},
        description="Report on many leased jobs at once (complete or fail). Each item is answered on its own, in "
        "order: a bad item (400), an unknown job (404) or a lost lease (409) changes nothing and does not hold up "
        "the others. Sending the same batch again changes nothing more. See docs/worker-protocol.md.",
    )
    def post(self, request):
        items = validated(BatchReport, request)["reports"]
        if len(items) > settings.WORK_BATCH_MAX_JOBS:
            raise DRFValidationError({"reports": [f"At most {settings.WORK_BATCH_MAX_JOBS} reports per request."]})
        parse = ReportParser()
        parsed = [parse(item) for item in items]
        reports = [report for report in parsed if isinstance(report, batches.Report)]
        answers = iter(batches.jobs_report(reports=reports, by=request.user,
                                           site_ids=allowed_site_ids(request.user)) if reports else ())
        results = []
        for index, report in enumerate(parsed):
            if isinstance(report, batches.Report):
                results.append(report_answer(index, report, next(answers)))
            else:
                results.append({"index": index, **report})
        return Response({"results": results})


class ReportParser:
    """Reads the items of one batch report; one serializer per shape for the whole batch, not one per item."""

    def __init__(self) -> None:
        self.serializers: dict[type, serializers.Serializer] = {}

    def validate(self, serializer_class: type, item: dict) -> tuple[dict | None, dict | None]:
        """(validated data, None) or (None, field errors)."""
        serializer = self.serializers.get(serializer_class)
        if serializer is None:
            serializer = self.serializers[serializer_class] = serializer_class()
        try:
            return serializer.run_validation(item), None
        except DRFValidationError as exc:
            return None, exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}

    def __call__(self, item) -> batches.Report | dict:
        """An item as a ``batches.Report``, or its 400 answer (``kind``, ``id``, ``code``, ``errors``)."""
        if not isinstance(item, dict):
            return {"kind": None, "id": None, "code": 400, "errors": {"non_field_errors": ["Send a JSON object."]}}
        head = plain_head(item)
        if head is None:  # something to say about it: the serializer says it
            head, errors = self.validate(ReportItem, item)
            if errors:
                return {"kind": None, "id": None, "code": 400, "errors": errors}
        kind, pk, outcome = head["kind"], head["id"], head["outcome"]
        handler = job_kinds.get(kind)
        if handler is None:
            return {"kind": kind, "id": pk, "code": 400,
                    "errors": {"kind": [f"No such job kind is served here: {kind}."]}}
        data, errors = self.validate(complete_serializer(handler) if outcome == batches.COMPLETE else FailReport, item)
        if errors:
            return {"kind": kind, "id": pk, "code": 400, "errors": errors}
        return report_of(handler, item, data, kind=kind, pk=pk, outcome=outcome)


_OUTCOMES = frozenset((batches.COMPLETE, batches.FAIL))
_KINDS = frozenset(JobKind.values)


def plain_head(item: dict) -> dict | None:
    """``ReportItem``'s validated data for a well-formed item (str kind and outcome, int id), checked in plain
    Python; None for anything else, which ``ReportItem`` then validates (and words the 400) as before.

    The serializer costs more than the rest of an item's report; a batch of 100 has 100 heads.
    """
    kind, pk, outcome = item.get("kind"), item.get("id"), item.get("outcome")
    if (type(kind) is str and kind in _KINDS and type(pk) is int and 1 <= pk <= MAX_ID
            and type(outcome) is str and outcome in _OUTCOMES):
        return {"kind": kind, "id": pk, "outcome": outcome}
    return None


def report_of(handler, item: dict, data: dict, *, kind: str, pk: int, outcome: str) -> batches.Report:
    common = {"kind": kind, "pk": pk, "action": outcome, "lease_token": data["lease_token"],
              "log_path": data.get("log_path", "")}
    if outcome == batches.FAIL:
        return batches.Report(**common, error=data["error"], retryable=data["retryable"],
                              source_corrupt=data["source_corrupt"])
    result = {k: v for k, v in (data if handler.result_serializer else item).items()
              if k not in ("lease_token", "log_path", "kind", "id", "outcome")}
    return batches.Report(**common, result=result)


def report_answer(index: int, report: batches.Report, answer: batches.Answer) -> dict:
    head = {"index": index, "kind": report.kind, "id": report.pk, "code": answer.code}
    if answer.code == status.HTTP_200_OK:
        return {**head, **job_state(report.kind, answer.job)}
    if answer.code == status.HTTP_400_BAD_REQUEST:
        return {**head, "errors": validation_error_body(answer.refusal)}
    if answer.code == status.HTTP_409_CONFLICT:
        return {**head, "detail": answer.detail, "status": answer.job.status}
    return {**head, "detail": answer.detail}
