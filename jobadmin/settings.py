"""JobAdmin settings: one module, configured by environment variables only.

Out of the box it runs on the embedded default: SQLite in WAL mode, the django-q2 ORM
broker, a database cache (shared by every process, so worker liveness is visible) and
Channels' in-process layer. ``DATABASE_URL`` switches to PostgreSQL; ``REDIS_URL`` switches
the django-q2 broker, the cache and the channel layer to Redis.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import environ

from jobadmin import process as _process

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

DATA_DIR = Path(env.str("JOBADMIN_DATA_DIR", default=str(BASE_DIR / "var")))
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """An explicit DJANGO_SECRET_KEY, else one generated once and kept in the data folder."""
    if key := env.str("DJANGO_SECRET_KEY", default=""):
        return key
    path = DATA_DIR / "secret.key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "channels",
    "django_q",
    "jobs",
    "monitoring",
    "live",
    "console",
    "jobadmin",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Before CommonMiddleware: a preflight is answered (with the CORS headers) before anything else.
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: a view that meets a database outage answers 503 with Retry-After, not 500.
    "jobs.api_errors.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "jobadmin.urls"
WSGI_APPLICATION = "jobadmin.wsgi.application"
ASGI_APPLICATION = "jobadmin.asgi.application"

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

# --- Database ---------------------------------------------------------------------------
# The web entry points (jobadmin.asgi, jobadmin.wsgi) mark the process before Django loads
# these settings: web processes pool their connections, the others keep persistent ones.
WEB_PROCESS = _process.kind == "web"
# The most database connections one web process holds (PostgreSQL); 0: no pool, a
# persistent connection per request thread (not bounded: for a PgBouncer in front only).
JOBADMIN_DB_POOL_MAX = env.int("JOBADMIN_DB_POOL_MAX", default=10)
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'jobadmin.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock at BEGIN,
    # so two writers queue on the busy timeout instead of failing with "database is locked"
    # when a read transaction tries to upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": env.int("SQLITE_BUSY_TIMEOUT", default=30),
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Persistent here too: django-q2's ORM broker calls close_old_connections() on every
    # enqueue and dequeue, and reopening SQLite made each async_task ~25 ms instead of ~0.3.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=300)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
elif WEB_PROCESS and JOBADMIN_DB_POOL_MAX > 0:
    # A web process: Django's connection pool (psycopg_pool), at most JOBADMIN_DB_POOL_MAX
    # connections whatever it serves. Under ASGI every request runs its sync part in a
    # thread of its own, and a persistent connection per thread leaked one connection per
    # request thread (200 API requests to one daphne left 26 open; two daphne processes
    # exhausted max_connections). A request returns its connection to the pool when it ends.
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django refuses a pool with persistent connections
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True  # the pool checks a connection before lending it
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": min(2, JOBADMIN_DB_POOL_MAX),
        "max_size": JOBADMIN_DB_POOL_MAX,
        # A request that waits longer than this for a connection fails (PoolTimeout).
        "timeout": env.float("JOBADMIN_DB_POOL_TIMEOUT", default=10.0),
        "max_idle": 300.0,
    }
else:
    # Workers, the monitor and commands run their database work on a few long-lived
    # threads: persistent connections, bounded by those threads. A worker that reconnects
    # per task loses an order of magnitude, and its prepared statements with it.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=300)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
    # A database that does not answer fails a connect within this many seconds instead of
    # hanging on TCP's own time-out: a worker riding out an outage tries again each second.
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env.int("DATABASE_CONNECT_TIMEOUT", default=5)
    # The job engine's hot statements (jobs.rows) are prepared once per connection (pooled
    # connections keep theirs: the pool lends the same connections again); the ORM keeps
    # client-side binding. Off behind a transaction-pooling PgBouncer < 1.21.
    if env.bool("DATABASE_PREPARED_STATEMENTS", default=True):
        DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 5

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker, cache and channel layer ----------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
REDIS_PREFIX = env.str("REDIS_PREFIX", default="jobadmin")

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": REDIS_PREFIX,
            # Redis away fails fast (the rate limits fall back, health says so) instead of
            # holding a request for the operating system's TCP time-out.
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 5},
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": f"{REDIS_PREFIX}:channels"},
        }
    }
else:
    # A database cache, not a per-process one: django-q2 keeps its cluster stats in the
    # cache, and the monitor must see them from another process.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "jobadmin_cache",
        }
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- JobAdmin ------------------------------------------------------------------------------
# Concurrency limit per queue, held across every worker process.
JOBADMIN_QUEUES: dict[str, int] = {"high": 2, "default": 5, "batch": 3}
JOBADMIN_MAX_JOB_TIMEOUT = env.int("JOBADMIN_MAX_JOB_TIMEOUT", default=3600)
JOBADMIN_HEARTBEAT_INTERVAL = env.float("JOBADMIN_HEARTBEAT_INTERVAL", default=2.0)
JOBADMIN_CONTROL_POLL = env.float("JOBADMIN_CONTROL_POLL", default=0.5)
# A running job whose heartbeat is older than this is stalled (its worker died). It must
# exceed JOBADMIN_DB_OUTAGE_GRACE by two heartbeats, or the grace is cut short (jobs.outage).
JOBADMIN_STALL_THRESHOLD = env.float("JOBADMIN_STALL_THRESHOLD", default=90.0)
# A worker that loses the database keeps its job, its reports and its outcome for this long
# before it gives the job up to the stall sweep (jobs.outage; docs/engine.md).
JOBADMIN_DB_OUTAGE_GRACE = env.float("JOBADMIN_DB_OUTAGE_GRACE", default=60.0)
JOBADMIN_LONG_RUNNING_THRESHOLD = env.float("JOBADMIN_LONG_RUNNING_THRESHOLD", default=1800.0)
# Progress reports are coalesced into at most one write per interval.
JOBADMIN_PROGRESS_INTERVAL = env.float("JOBADMIN_PROGRESS_INTERVAL", default=0.5)
# A wake-up keeps claiming jobs of its queue for this long before handing over.
JOBADMIN_WAKEUP_BUDGET = env.float("JOBADMIN_WAKEUP_BUDGET", default=5.0)
# Wake-ups counted in flight that no worker took within this many seconds are believed lost
# (Redis restarted empty): the next enqueue or hand-over sends a fresh one, monitor or not.
JOBADMIN_WAKEUP_LOST_AFTER = env.float("JOBADMIN_WAKEUP_LOST_AFTER", default=5.0)
JOBADMIN_DISPATCH_INTERVAL = env.float("JOBADMIN_DISPATCH_INTERVAL", default=1.0)
# A worker process told to stop (SIGTERM) suspends its job at the next checkpoint and exits;
# a job that reaches none within this many seconds follows its stall policy (jobs.shutdown).
JOBADMIN_SHUTDOWN_GRACE = env.float("JOBADMIN_SHUTDOWN_GRACE", default=30.0)
JOBADMIN_HISTORY_DAYS = env.int("JOBADMIN_HISTORY_DAYS", default=30)
JOBADMIN_PURGE_BATCH = env.int("JOBADMIN_PURGE_BATCH", default=2000)
JOB_STATS_INTERVAL = env.float("JOB_STATS_INTERVAL", default=5.0)
# Web processes: the garbage collector's young generation (live.relay.tune_gc); 0 keeps
# Python's 700, under which delivering frames triggered full collections that stalled sockets.
JOBADMIN_WEB_GC_THRESHOLD = env.int("JOBADMIN_WEB_GC_THRESHOLD", default=20_000)
# The relay (live.relay): how often it reads the event log for new rows, and how long it
# waits for an event id that was skipped (a transaction still open, or rolled back).
JOBADMIN_RELAY_POLL = env.float("JOBADMIN_RELAY_POLL", default=0.01)
# On PostgreSQL the relay is woken by LISTEN/NOTIFY (a trigger notifies at each commit of
# events) and reads the log only then, or every JOBADMIN_RELAY_SAFETY_POLL seconds in case a
# notification was missed (while its listening connection reconnected); SQLite, or false
# here (behind a transaction-pooling PgBouncer, where LISTEN does not work), polls.
JOBADMIN_RELAY_LISTEN = env.bool("JOBADMIN_RELAY_LISTEN", default=True)
JOBADMIN_RELAY_SAFETY_POLL = env.float("JOBADMIN_RELAY_SAFETY_POLL", default=1.0)
JOBADMIN_RELAY_GAP_GRACE = env.float("JOBADMIN_RELAY_GAP_GRACE", default=30.0)
# Where the relay runs: in the web process on the embedded default (no Redis: the channel
# layer lives in that process); with Redis in `monitor`, unless this puts it in the web
# process anyway (one daphne, no monitor).
JOBADMIN_RELAY_IN_WEB = env.bool("JOBADMIN_RELAY_IN_WEB", default=False) or not REDIS_URL
# The shortest time between two writes of one live gauge to the cache (relay lag, sockets).
JOBADMIN_GAUGE_INTERVAL = env.float("JOBADMIN_GAUGE_INTERVAL", default=1.0)
# Daphne sends each connection's websocket frames once per event-loop turn instead of
# registering the socket for writability per frame (live/transport.py).
JOBADMIN_COALESCE_TCP_WRITES = env.bool("JOBADMIN_COALESCE_TCP_WRITES", default=True)

# --- Monitoring (docs/monitoring.md) ----------------------------------------------------------
JOBADMIN_METRICS_INTERVAL = env.float("JOBADMIN_METRICS_INTERVAL", default=10.0)
JOBADMIN_METRICS_RETENTION_DAYS = env.int("JOBADMIN_METRICS_RETENTION_DAYS", default=90)
JOBADMIN_ALERTS_INTERVAL = env.float("JOBADMIN_ALERTS_INTERVAL", default=5.0)
# Statistics buckets (monitoring.rollup): folded with the alerts; this often the fold also
# recomputes the hours that lost jobs (deletions); changes this recent are always re-read
# from the raw rows.
JOBADMIN_ROLLUP_REBUILD = env.float("JOBADMIN_ROLLUP_REBUILD", default=600.0)
JOBADMIN_ROLLUP_MARGIN = env.float("JOBADMIN_ROLLUP_MARGIN", default=300.0)
JOBADMIN_WEBHOOK_TIMEOUT = env.float("JOBADMIN_WEBHOOK_TIMEOUT", default=3.0)
JOBADMIN_WEBHOOK_RETRIES = env.int("JOBADMIN_WEBHOOK_RETRIES", default=3)
ALERT_EMAIL_FROM = env.str("ALERT_EMAIL_FROM", default="jobadmin@localhost")
# /api/health/: more than N failures in the window is critical; a job running longer than
# the long-running threshold, or more than N active jobs, is a warning.
HEALTH_FAILURES_CRITICAL = env.int("HEALTH_FAILURES_CRITICAL", default=2)
HEALTH_FAILURES_WINDOW = env.int("HEALTH_FAILURES_WINDOW", default=300)
HEALTH_ACTIVE_WARNING = env.int("HEALTH_ACTIVE_WARNING", default=10)
# The monitor's lease (jobadmin.singleton), seconds: a leader that could not renew it for
# 0.6 of this stops its duties; a standby that takes over starts them this long after it
# took the lock. Takeover after a leader dies: about this plus a second.
JOBADMIN_MONITOR_LEASE = env.float("JOBADMIN_MONITOR_LEASE", default=5.0)
# Live updates arriving later than this (seconds; the relay's lag) make health a warning.
HEALTH_RELAY_LAG_WARNING = env.float("HEALTH_RELAY_LAG_WARNING", default=5.0)
# The monitor counts as down when its heartbeat is older than this (seconds).
HEALTH_MONITOR_STALE = env.float("HEALTH_MONITOR_STALE", default=60.0)
# /metrics: a request with "Authorization: Bearer <token>", or one from these client addresses.
# The addresses default to loopback only while no token is set: once one is, the token is
# required unless addresses are named explicitly (jobs.policy.may_scrape_metrics).
PROMETHEUS_TOKEN = env.str("PROMETHEUS_TOKEN", default="")
PROMETHEUS_ALLOWED_IPS = env.list("PROMETHEUS_ALLOWED_IPS", default=[] if PROMETHEUS_TOKEN else ["127.0.0.1", "::1"])

# --- Access (docs/security.md) ----------------------------------------------------------------
# Reverse proxies (addresses or networks) whose X-Forwarded-For / X-Forwarded-Proto are believed;
# from any other peer the connecting address is the client's.
JOBADMIN_TRUSTED_PROXIES = env.list("JOBADMIN_TRUSTED_PROXIES", default=[])
# Frontends on other origins ("https://app.example.com"): they get CORS headers on /api/ and may
# open the websocket; a request's own origin is always allowed.
JOBADMIN_CORS_ORIGINS = env.list("JOBADMIN_CORS_ORIGINS", default=[])
# django-cors-headers answers preflights under /api/ and asks jobs.policy (its
# check_request_enabled signal) which origins get the headers: JOBADMIN_CORS_ORIGINS is the one
# list, so its own stays empty.
CORS_ALLOWED_ORIGINS: list[str] = []
CORS_URLS_REGEX = r"^/api/"
# Cross-origin frontends authenticate with a token (Authorization header), not the session cookie.
CORS_ALLOW_CREDENTIALS = False

# --- Websocket limits and access (docs/security.md, "Websocket limits and access") ----------
# Every open socket's user, session or token and subscriptions are checked again this often
# (seconds; once per user and process for all of its sockets): a revoked permission, a
# deactivated user, a logout or a deleted token reaches an open socket within this time.
JOBADMIN_WS_REAUTH_INTERVAL = env.float("JOBADMIN_WS_REAUTH_INTERVAL", default=5.0)
# Open sockets per user (over every web process when REDIS_URL is set); one more is refused.
JOBADMIN_WS_MAX_SOCKETS_PER_USER = env.int("JOBADMIN_WS_MAX_SOCKETS_PER_USER", default=20)
# Subscriptions one socket may hold (its own user channel included).
JOBADMIN_WS_MAX_SUBSCRIPTIONS = env.int("JOBADMIN_WS_MAX_SUBSCRIPTIONS", default=100)

# django-q2's hard time-out of one task (a wake-up): a wake-up starts a job only if the job's
# own time-out fits in what is left of it (jobs.tasks.Budget), so this never kills a job
# within its time-out; time paused does not count (a paused job holds no worker). Above the
# longest job it leaves room for an outcome that waits out a database outage.
Q_TIMEOUT = env.int("Q_TIMEOUT", default=JOBADMIN_MAX_JOB_TIMEOUT + int(JOBADMIN_DB_OUTAGE_GRACE) + 60)
Q_CLUSTER = {
    "name": env.str("Q_CLUSTER_NAME", default="jobadmin"),
    # One worker process per job the queues' limits allow at once, so that a busy queue
    # cannot take the workers another queue's jobs need (health warns when fewer run).
    "workers": env.int("Q_WORKERS", default=sum(JOBADMIN_QUEUES.values())),
    # JobAdmin enforces each job type's own timeout inside the job; the cluster's hard
    # timeout is the backstop, and `retry` must stay above it so a slow task is never
    # re-delivered while it still runs.
    "timeout": Q_TIMEOUT,
    "retry": Q_TIMEOUT + 60,
    "max_attempts": 1,
    "ack_failures": True,
    "save_limit": 100,
    "catch_up": False,
    "poll": env.float("Q_POLL", default=0.1),
    "label": "Tasks",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- API ------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: its WWW-Authenticate header makes an anonymous request a 401, not a 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    # The limits count in the cache (Redis); while it is away, in each process (jobs.throttling).
    "DEFAULT_THROTTLE_CLASSES": [
        "jobs.throttling.UserRateThrottle",
        "jobs.throttling.AnonRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": env.str("API_THROTTLE_USER", default="6000/min"),
        "anon": env.str("API_THROTTLE_ANON", default="120/min"),
        "enqueue": env.str("API_THROTTLE_ENQUEUE", default="600/min"),
        "token": env.str("API_THROTTLE_TOKEN", default="20/min"),
    },
    "EXCEPTION_HANDLER": "jobs.api_errors.exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "JobAdmin API",
    "DESCRIPTION": "Run, watch and steer background jobs.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Alerts and jobs both have a "status" field with different choices.
    "ENUM_NAME_OVERRIDES": {
        "AlertStatusEnum": "monitoring.models.AlertStatus",
        "JobStatusEnum": "jobs.models.JobStatus",
        "HealthStatusEnum": "monitoring.health.STATUSES",
        # The bulk request's `action` and a job's `actions`: one choice set, one name.
        "ActionEnum": "jobs.models.ACTION_NAMES",
    },
    # The schema and the interactive docs need a login, like the rest of the API.
    "SERVE_PERMISSIONS": ["jobs.permissions.SignedIn"],
}

# --- The rest -------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns on every request while it is missing
STATICFILES_DIRS: list[Path | tuple[str, Path]] = [BASE_DIR / "static"]
# Browser libraries installed by `make` (npm ci) from package-lock.json, never committed.
if (BASE_DIR / "node_modules" / "chart.js" / "dist").is_dir():
    STATICFILES_DIRS.append(("vendor/chartjs", BASE_DIR / "node_modules" / "chart.js" / "dist"))
WHITENOISE_USE_FINDERS = True
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(DATA_DIR / "media")))

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
# Alert e-mails of a rule without recipients go to these (Django's own setting).
ADMINS: list[tuple[str, str]] = []

# `manage.py runall` (`make run`): where the web server listens unless --host/--port say.
RUNALL_HOST = env.str("HOST", default="127.0.0.1")
RUNALL_PORT = env.int("PORT", default=8000)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # django-q2 logs as "django-q"; at INFO it writes a line for every task it enqueues and runs.
    "loggers": {"django-q": {"level": env.str("Q_LOG_LEVEL", default="WARNING")}},
}
