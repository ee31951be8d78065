"""HTTP client for the ops-db worker protocol (docs/worker-protocol.md), with bounded retries.

Retried: connection errors, timeouts, 5xx and 429 (exponential backoff with jitter, honouring
``Retry-After``). Never retried: other 4xx — they are answers, not outages. A 409 on a report
means the lease is gone (LeaseLost); repeating ``complete``/``fail``/``heartbeat`` after a lost
response is safe because the server treats a repeat with the same lease token as a no-op.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import requests

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class ApiError(Exception):
    """ops-db answered with an error status that retrying will not change."""

    def __init__(self, status: int, body: Any, method: str = "", url: str = ""):
        self.status, self.body = status, body
        super().__init__(f"{method} {url} → HTTP {status}: {body}")


class LeaseLost(ApiError):
    """409: the lease on the job is no longer held (expired, replaced, or the job moved on)."""


class ApiUnavailable(Exception):
    """ops-db could not be reached (or kept answering 5xx/429) after every retry."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: float = 0.3

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        raw = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        raw *= 1 + random.uniform(-self.jitter, self.jitter)
        if retry_after is not None:
            raw = max(raw, min(retry_after, self.max_delay))
        return max(0.0, raw)


class ApiClient:
    """One worker's connection to ops-db; safe to share between threads (one session per thread)."""

    def __init__(self, base_url: str, token: str, *, retry: RetryPolicy | None = None, timeout: float = 30.0,
                 sleep: Callable[[float], Any] = time.sleep):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._sleep = sleep
        self._local = threading.local()

    # -- transport -------------------------------------------------------------------------
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update({"Authorization": f"Token {self.token}", "Accept": "application/json",
                                    "User-Agent": "opsdb-worker"})
            self._local.session = session
        return session

    def request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> requests.Response:
        """Send one request, retrying outages; returns the first non-retryable response."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        problem = ""
        for attempt in range(1, self.retry.attempts + 1):
            retry_after = None
            try:
                response = self._session().request(method, url, json=payload, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code not in RETRY_STATUSES:
                    return response
                problem = f"HTTP {response.status_code}"
                retry_after = _retry_after(response)
            if attempt < self.retry.attempts:
                wait = self.retry.delay(attempt, retry_after)
                log.warning("%s %s failed (%s); retry %d/%d in %.1fs", method, url, problem, attempt,
                            self.retry.attempts - 1, wait)
                self._sleep(wait)
        raise ApiUnavailable(f"{method} {url}: gave up after {self.retry.attempts} attempts ({problem})")

    def post(self, path: str, payload: dict[str, Any]) -> requests.Response:
        return self.request("POST", path, payload)

    def _post_report(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = self.post(path, payload)
        if response.status_code == 409:
            raise LeaseLost(409, _body(response), "POST", path)
        if response.status_code >= 400:
            raise ApiError(response.status_code, _body(response), "POST", path)
        return _body(response) or {}

    # -- protocol --------------------------------------------------------------------------
    def claim(self, *, worker: str, kinds: Sequence[str] = (), sites: Sequence[str] = (),
              methods: Sequence[str] = (), lease_seconds: int | None = None) -> dict[str, Any] | None:
        """One job, or None when there is nothing to do (204).

        Each claim carries a request id, the same in its retries. A claim that got no answer at all
        (ApiUnavailable) may still have taken a job: this thread's next claim repeats its id, and the
        server gives that job back rather than leave it claimed by nobody until its lease expires.
        """
        return self._claim(worker=worker, kinds=kinds, sites=sites, methods=methods, lease_seconds=lease_seconds)

    def claim_batch(self, *, worker: str, max_jobs: int, kinds: Sequence[str] = (), sites: Sequence[str] = (),
                    methods: Sequence[str] = (), lease_seconds: int | None = None) -> list[dict[str, Any]]:
        """Up to ``max_jobs`` jobs (``[]`` when there is nothing to do), as ``claim`` does for one."""
        answer = self._claim(worker=worker, kinds=kinds, sites=sites, methods=methods, lease_seconds=lease_seconds,
                             max_jobs=max_jobs)
        return [] if answer is None else list(answer["jobs"])

    def _claim(self, *, worker: str, kinds: Sequence[str], sites: Sequence[str], methods: Sequence[str],
               lease_seconds: int | None, max_jobs: int | None = None) -> dict[str, Any] | None:
        request_id = getattr(self._local, "unanswered_claim", None) or uuid.uuid4().hex
        self._local.unanswered_claim = request_id
        payload: dict[str, Any] = {"worker": worker, "request_id": request_id}
        for key, value in (("kinds", kinds), ("sites", sites), ("methods", methods)):
            if value:
                payload[key] = list(value)
        if lease_seconds:
            payload["lease_seconds"] = lease_seconds
        if max_jobs is not None:
            payload["max_jobs"] = max_jobs
        response = self.post("api/v1/work/claim/", payload)
        self._local.unanswered_claim = None
        if response.status_code == 204:
            return None
        if response.status_code != 200:
            raise ApiError(response.status_code, _body(response), "POST", "api/v1/work/claim/")
        return response.json()

    def report(self, reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Report on many jobs at once (``{"kind", "id", "outcome", "lease_token", ...}`` each); one answer each.

        Safe to repeat after a lost answer: the server changes nothing for reports it already applied.
        """
        response = self.post("api/v1/work/report/", {"reports": reports})
        if response.status_code != 200:
            raise ApiError(response.status_code, _body(response), "POST", "api/v1/work/report/")
        return list(response.json()["results"])

    def heartbeat(self, kind: str, job_id: int, lease_token: str, **extra: Any) -> dict[str, Any]:
        payload = {"lease_token": lease_token, **{k: v for k, v in extra.items() if v is not None}}
        return self._post_report(f"api/v1/work/{kind}/{job_id}/heartbeat/", payload)

    def complete(self, kind: str, job_id: int, lease_token: str, result: dict[str, Any]) -> dict[str, Any]:
        return self._post_report(f"api/v1/work/{kind}/{job_id}/complete/", {"lease_token": lease_token, **result})

    def fail(self, kind: str, job_id: int, lease_token: str, *, error: str, log_path: str = "",
             retryable: bool = True, source_corrupt: bool = False) -> dict[str, Any]:
        payload = {"lease_token": lease_token, "error": error, "retryable": retryable}
        if source_corrupt:
            payload["source_corrupt"] = True  # the stored copy the job read is corrupt (transfer, unpack)
        if log_path:
            payload["log_path"] = log_path
        return self._post_report(f"api/v1/work/{kind}/{job_id}/fail/", payload)

    def partials(self, jobs: list[dict[str, Any]]) -> dict[str, Any]:
        """Which of these jobs (``{"kind", "id"}``) still have an attempt to come that may resume a partial file."""
        response = self.post("api/v1/work/partials/", {"jobs": jobs})
        if response.status_code != 200:
            raise ApiError(response.status_code, _body(response), "POST", "api/v1/work/partials/")
        return response.json()

    def log(self, kind: str, job_id: int, *, lease_token: str, message: str, level: str = "INFO",
            log_path: str = "") -> dict[str, Any]:
        payload = {"lease_token": lease_token, "level": level, "message": message[:500]}
        if log_path:
            payload["log_path"] = log_path
        return self._post_report(f"api/v1/work/{kind}/{job_id}/log/", payload)


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return float(value)
    except ValueError:
        return None


def _body(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text[:500]
