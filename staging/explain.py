"""Technical job errors in words a scientist understands (the technical text stays available)."""

import re

# (pattern in the technical text, plain explanation); the first match wins.
PLAIN_ERRORS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"checksum|digest|corrupt", re.I),
     "A file arrived damaged (its checksum did not match the archive's record). It will be copied again."),
    (re.compile(r"no space|disk full|quota|ENOSPC", re.I),
     "The processing area ran out of space. The operators need to free some room."),
    (re.compile(r"permission denied|not permitted|EACCES|access denied", re.I),
     "The system was not allowed to read the archive or write to the processing area."),
    (re.compile(r"no such file|not found|missing|ENOENT", re.I),
     "A file could not be found where the archive says it is."),
    (re.compile(r"lease .*expired|expired without a report", re.I),
     "The worker doing this stopped responding (it may have restarted). It will be tried again."),
    (re.compile(r"timed? ?out|timeout", re.I),
     "The connection to the storage timed out."),
    (re.compile(r"connection|unreachable|refused|network|host", re.I),
     "The storage could not be reached over the network."),
    (re.compile(r"cancel", re.I), "The request was cancelled."),
]
GENERIC = "Something went wrong while copying the data. The technical details below help the operators."


def plain_error(text: str) -> str:
    """A short explanation of a technical error message; empty for no error."""
    if not text:
        return ""
    for pattern, explanation in PLAIN_ERRORS:
        if pattern.search(text):
            return explanation
    return GENERIC


STATUS_WORDS = {
    "PENDING": "Waiting for a worker",
    "ACTIVE": "Being copied now",
    "READY": "Ready to use",
    "FAILED": "Failed, waiting for an operator",
    "CANCELLED": "Cancelled",
}


def status_words(status: str) -> str:
    return STATUS_WORDS.get(status, status.title())


def job_status_words(job) -> str:
    """A request's state in words, telling an expired (cleaned up) READY request from a usable one."""
    if job.status == "READY" and job.cleaned_at:
        return "Expired, files removed"
    return status_words(job.status)
