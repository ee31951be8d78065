"""ops-db settings, read from environment variables (see README.md)."""

import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from opsdb.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("OPSDB_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", default=False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "insecure-development-key-only-for-debug-mode-" + "x" * 20
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_fsm",
    "django_fsm_log",
    "simple_history",
    "rangefilter",
    "axes",
    "opsdb",
    "transfers",
    "staging",
    "custody",
    "operations",
]

MIDDLEWARE = [
    "operations.metrics.RequestMetricsMiddleware",  # request counts and latency for /metrics: times the whole stack
    "django.middleware.security.SecurityMiddleware",
    "opsdb.views.DatabaseUnavailableMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    # The pages' middleware, from here to PageMiddlewareEnd: a worker's token request to the work API
    # skips it (opsdb/middleware.py says why each one has nothing to do for it).
    "opsdb.middleware.WorkApiBypass",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # answers a locked-out sign-in with the lockout page
    "opsdb.middleware.PageMiddlewareEnd",
]

ROOT_URLCONF = "opsdb.urls"
WSGI_APPLICATION = "opsdb.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: DATABASE_URL picks it; embedded SQLite when unset.
_database_url = env_str("DATABASE_URL")
if _database_url:
    # The development server runs each client on a thread of its own: a persistent connection per
    # thread outlives the request, and they piled up to PostgreSQL's max_connections. It closes
    # its connection after each request; gunicorn's fixed threads keep theirs for DB_CONN_MAX_AGE.
    _conn_max_age = 0 if sys.argv[1:2] == ["runserver"] else env_int("DB_CONN_MAX_AGE", 60)
    DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=_conn_max_age)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"].setdefault("OPTIONS", {})
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
        # PostgreSQL compiles a plan estimated dear (jit_above_cost) before running it: 200-250 ms
        # for an admin list's query at 10^6 rows that then ran in 100 ms, and up to a second for the
        # deletion pass. ops-db's queries are short or index-bound, so it is off unless asked for.
        if not env_bool("DB_JIT", default=False):
            options = DATABASES["default"]["OPTIONS"]
            options["options"] = f"{options.get('options', '')} -c jit=off".strip()
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH", str(VAR_DIR / "opsdb.sqlite3")),
            # Several processes (app, scheduler, workers) share the file: WAL lets readers run
            # beside a writer, IMMEDIATE takes the write lock at BEGIN so two writers queue on
            # the busy timeout instead of failing half-way through a transaction.
            "OPTIONS": {
                "timeout": env_int("SQLITE_BUSY_TIMEOUT", 30),
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
            },
            "TEST": {"NAME": env_str("SQLITE_TEST_PATH", str(VAR_DIR / "test-opsdb.sqlite3"))},
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Under DEBUG=0 pages need `manage.py collectstatic` to have filled this folder (opsdb/checks.py).
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Sign-in (admin and scientists' pages): django-axes counts failed attempts per user name and client
# address and refuses that pair for a while after too many. Workers never sign in: tokens only.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "opsdb.auth.PeopleOnlyBackend"]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

# Scientists are told by email when their data is ready. Under DEBUG=0 mail must go somewhere on
# purpose: a silent console default would print their emails to the server's log instead.
EMAIL_BACKEND = env_str("EMAIL_BACKEND")
if not EMAIL_BACKEND:
    if not DEBUG:
        raise ImproperlyConfigured(
            "EMAIL_BACKEND must be set when DEBUG is off: django.core.mail.backends.smtp.EmailBackend "
            "(with EMAIL_HOST, ...) to send mail, or django.core.mail.backends.dummy.EmailBackend to send none"
        )
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", default=False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "ops-db@localhost")

# Production hardening (manage.py check --deploy); relaxed only in DEBUG.
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "opsdb.api.authentication.RoleTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "opsdb.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    # Cursor pagination: no COUNT(*) and an index seek instead of OFFSET, so page 10,000 of the
    # transfers costs what page 1 does (see opsdb/api/pagination.py).
    "DEFAULT_PAGINATION_CLASS": "opsdb.api.pagination.KeysetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "opsdb.api.exceptions.api_exception_handler",
    "ORDERING_PARAM": "ordering",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "ops-db API",
    "DESCRIPTION": "Where raw data is, how it moves, and the work protocol for site workers.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "opsdb.choices.JobStatus",
        "JobKindEnum": "opsdb.choices.JobKind",
        "CopyStatusEnum": "opsdb.choices.CopyStatus",
        "LocationTypeEnum": "opsdb.choices.LocationType",
        "StorageTypeEnum": "opsdb.choices.StorageType",
        "ChecksumAlgorithmEnum": "opsdb.choices.ChecksumAlgorithm",
        "LogLevelEnum": "opsdb.choices.LogLevel",
        "TransferMethodEnum": "opsdb.choices.TransferMethod",
        "RouteTypeEnum": "transfers.choices.RouteType",
        "StagedPackageStateEnum": "staging.choices.StagedPackageState",
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Workers' API tokens (opsdb/tokens.py): how long a server process trusts what it read about a
# token (its user, groups, sites) before reading it again; a change made in another process
# (revoking a token, removing a worker from a site) takes effect here within this time.
API_TOKEN_CACHE_SECONDS = env_int("API_TOKEN_CACHE_SECONDS", 30, minimum=0)
# A token's last use (when its worker was last seen) is written at most this often per server process.
API_TOKEN_LAST_USED_SECONDS = env_int("API_TOKEN_LAST_USED_SECONDS", 60, minimum=1)

# django-fsm-log's simple backend, plus one insert for the transitions of a batch (opsdb/statelogs.py).
DJANGO_FSM_LOG_STORAGE_METHOD = "opsdb.statelogs.BatchingBackend"

# Leased jobs (opsdb/leases.py, opsdb/services.py).
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 5, minimum=1)
JOB_BACKOFF_BASE_SECONDS = env_float("JOB_BACKOFF_BASE_SECONDS", 30.0, minimum=0)
JOB_BACKOFF_MAX_SECONDS = env_float("JOB_BACKOFF_MAX_SECONDS", 3600.0, minimum=0)
JOB_BACKOFF_JITTER = env_float("JOB_BACKOFF_JITTER", 0.2, minimum=0)
JOB_DEFAULT_LEASE_SECONDS = env_int("JOB_DEFAULT_LEASE_SECONDS", 600, minimum=1)
JOB_MAX_LEASE_SECONDS = env_int("JOB_MAX_LEASE_SECONDS", 86400, minimum=1)
# Batches of the work protocol: at most this many jobs in one claim (``max_jobs``) or one batch report.
WORK_BATCH_MAX_JOBS = env_int("WORK_BATCH_MAX_JOBS", 100, minimum=1)
# Where the detailed log files of jobs can be read: a URL with {path} (and optionally {kind}, {id},
# {worker}), e.g. https://logs.example.org/files{path}. Empty: log paths are shown as text to copy.
# Checked at start-up (opsdb/log_links.py); ops-db itself never opens a log file.
LOG_URL_TEMPLATE = env_str("LOG_URL_TEMPLATE", "")
# Why raw packages at a buffer are in no transfer package yet (the bundling rules live in transfers):
# a function (raw_packages, now) -> {raw package id: Explanation}, declared like the job kinds.
RAW_PACKAGE_EXPLAINER = "transfers.explain.explain_raw_packages"
# A waiting job's partial data (what an interrupted attempt left for the next one) is discarded
# once its last attempt ended this long ago: workers remove the files, the next attempt starts over.
PARTIAL_MAX_AGE_SECONDS = env_int("PARTIAL_MAX_AGE_SECONDS", 7 * 86400, minimum=1)
ARCHIVE_MAX_ATTEMPTS = 3  # fixed by DESIGN.md: then requires_intervention

# The job kinds, in claim-priority order: one line per kind, naming its handler (opsdb/work.py;
# docs/adding-a-job-kind.md). A scientist's ``stage`` first; then the bulk work downstream first,
# so data already on its way is finished (archived, unpacked) before more is started.
JOB_KINDS = [
    "staging.work.StageHandler",
    "staging.archive_work.ArchiveHandler",
    "transfers.work.UnpackHandler",
    "transfers.work.TransferHandler",
    "transfers.work.PackageHandler",
    "custody.work.DeleteHandler",
    "staging.verify_work.VerifyHandler",
]
# Claim fairness: a kind defers to the kinds declared before it for at most this long per place in
# JOB_KINDS. A job's claim deadline is the time it became due plus position × this step; a worker
# gets the due job with the earliest deadline among the kinds it serves (docs/worker-protocol.md).
JOB_CLAIM_KIND_STEP_SECONDS = env_int("JOB_CLAIM_KIND_STEP_SECONDS", 3600, minimum=0)

# The scheduler's passes, in the order of one tick (docs/scheduler.md). Lease recovery first, so a
# job whose lease ran out is claimable again in the same tick.
SCHEDULER_PASSES = [
    ("leases", "opsdb.recovery.expire_leases"),
    ("bundling", "transfers.planning.plan_bundles"),
    ("routing", "transfers.planning.plan_transfers"),
    ("unpacking", "transfers.planning.plan_unpacks"),
    ("bundle repairs", "transfers.planning.plan_bundle_repairs"),
    ("archiving", "staging.planning.plan_archive_transfers"),
    ("fixity", "staging.fixity.plan_fixity"),
    ("staging cleanup", "staging.planning.clean_expired_staging"),
    ("deletion", "custody.planning.plan_deletions"),
    ("partial data", "opsdb.recovery.discard_expired_partial_data"),
    ("route health", "transfers.services.route_health_pass"),
    ("operations history", "operations.history.record_history"),
]

# Custody ("where is my data", opsdb/custody.py): a raw package is safe once every archive its
# routes deliver it to holds a verified copy, and at least this many sites do.
ARCHIVE_MIN_COPIES = env_int("ARCHIVE_MIN_COPIES", 1, minimum=1)
# The function that says which sites' archives a package must reach (project wiring: it reads the routes).
CUSTODY_ARCHIVE_SITES = "transfers.destinations.required_archive_sites"

# Fixity audits (staging/fixity.py): every long-term archive copy re-read at least once per cycle,
# oldest-verified first, at most this many bytes of checks per archive location a day. When more
# than the ratio of one day's checks at a location fail (and at least the minimum number), automatic
# repair stops there until an operator releases it (a mass failure is more likely a mount problem).
FIXITY_CYCLE_DAYS = env_int("FIXITY_CYCLE_DAYS", 365, minimum=1)
FIXITY_BYTES_PER_DAY = env_int("FIXITY_BYTES_PER_DAY", 2 * 10**12, minimum=1)
FIXITY_HOLD_RATIO = env_float("FIXITY_HOLD_RATIO", 0.01, minimum=0)
FIXITY_HOLD_MIN_FAILURES = env_int("FIXITY_HOLD_MIN_FAILURES", 2, minimum=1)
FIXITY_MAX_CHECKS_PER_PASS = env_int("FIXITY_MAX_CHECKS_PER_PASS", 10_000, minimum=1)
# The method of the active route between two sites, for repairs from another site's archive.
SITE_ROUTE_METHODS = "transfers.destinations.site_route_methods"

# Bundling (see transfers/planning.py): route settings override these.
BUNDLE_TARGET_SIZE_BYTES = env_int("BUNDLE_TARGET_SIZE_BYTES", 10 * 10**12, minimum=1)
BUNDLE_MAX_WAIT_SECONDS = env_int("BUNDLE_MAX_WAIT_SECONDS", 6 * 3600, minimum=0)

# Route health (see transfers/health.py): when a route pauses itself and how it probes its way back.
ROUTE_PAUSE_AFTER_FAILURES = env_int("ROUTE_PAUSE_AFTER_FAILURES", 5, minimum=1)
ROUTE_SUCCESS_WINDOW_SECONDS = env_int("ROUTE_SUCCESS_WINDOW_SECONDS", 30 * 60, minimum=1)
ROUTE_SUCCESS_RATE_MIN = env_float("ROUTE_SUCCESS_RATE_MIN", 0.5, minimum=0)
ROUTE_SUCCESS_MIN_ATTEMPTS = env_int("ROUTE_SUCCESS_MIN_ATTEMPTS", 10, minimum=1)
ROUTE_COOLDOWN_SECONDS = env_int("ROUTE_COOLDOWN_SECONDS", 30 * 60, minimum=0)

# Staging lifetime for scientists' requests.
# Deletion (docs/custody.md): a buffer copy of a raw package may go once the package is safe
# (ARCHIVE_MIN_COPIES, CUSTODY_ARCHIVE_SITES above) and no open job reads it.
# Copies one delete job covers at most (all at one location).
DELETE_JOB_MAX_COPIES = env_int("DELETE_JOB_MAX_COPIES", 500, minimum=1)
# Copies one deletion pass schedules at most per location (oldest-archived first); a larger
# backlog drains over the following passes (bounds the pass's time, like Rucio's reaper chunks).
DELETION_MAX_COPIES_PER_PASS = env_int("DELETION_MAX_COPIES_PER_PASS", 10_000, minimum=1)
# Deletion pauses itself at a location when this many deletions failed there since the last pass.
DELETION_PAUSE_AFTER_FAILURES = env_int("DELETION_PAUSE_AFTER_FAILURES", 10, minimum=1)

STAGING_DEFAULT_LIFETIME_DAYS = env_int("STAGING_DEFAULT_LIFETIME_DAYS", 14, minimum=1)
STAGING_MAX_LIFETIME_DAYS = env_int("STAGING_MAX_LIFETIME_DAYS", 90, minimum=1)
# At most this many packages in one selection / request (bounds "select all results").
STAGING_SELECTION_MAX = env_int("STAGING_SELECTION_MAX", 500, minimum=1)
# Pages of requests with work under way reload themselves this often.
STAGING_PAGE_REFRESH_SECONDS = env_int("STAGING_PAGE_REFRESH_SECONDS", 5, minimum=1)

# The operations view (operations/): when work counts as stuck, and who may read /metrics.
# A site's work is stalled when no worker serving it was seen (API request or heartbeat) for this long;
# a job waiting there says so (opsdb/explain.py).
WORKER_SILENT_SECONDS = env_int("WORKER_SILENT_SECONDS", 600, minimum=1)
# A due job that nobody claimed for this long is stuck.
STUCK_PENDING_SECONDS = env_int("STUCK_PENDING_SECONDS", 3600, minimum=1)
# /metrics answers loopback clients, and others that send "Authorization: Bearer <this token>".
METRICS_BEARER_TOKEN = env_str("METRICS_BEARER_TOKEN")
# Needs attention in the admin: the callables that add their rows to the panel (opsdb/templatetags).
ADMIN_ATTENTION = ["operations.stuck.attention_items"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
