"""The standalone project's settings: one module, configured by environment variables only.

It is a host of the reusable app like any other (``docs/install.md``): JobAdmin's own settings
have their defaults in ``jobadmin.conf``; this module reads each from the environment, with
that default.

Out of the box it runs on the embedded default: SQLite in WAL mode, the django-q2 ORM
broker, a database cache (shared by every process, so worker liveness is visible) and
Channels' in-process layer. ``DATABASE_URL`` switches to PostgreSQL; ``REDIS_URL`` switches
the django-q2 broker, the cache and the channel layer to Redis.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import django
import environ

from jobadmin import conf as _conf
from jobadmin import process as _process

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()


def _env(name: str) -> Any:
    """JobAdmin setting ``name`` from the environment variable of that name, else its default
    (``jobadmin.conf``), parsed as the kind of value it is."""
    spec = _conf.SETTINGS[name]
    read = {"float": env.float, "int": env.int, "bool": env.bool, "str": env.str, "list": env.list}[spec.kind]
    return read(name, default=spec.default)


DATA_DIR = Path(env.str("JOBADMIN_DATA_DIR", default=str(BASE_DIR / "var")))
JOBADMIN_DATA_DIR = DATA_DIR
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
    # daphne before staticfiles: its runserver serves websockets too.
    "daphne",
    # JobAdmin's apps before django.contrib.admin: console's admin/index.html (health and counts
    # at a glance) overrides the stock index in the standalone project.
    *_conf.JOBADMIN_APPS,
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # The admin login's throttle (docs/security.md, "Admin login").
    "axes",
    "csp",
]

MIDDLEWARE = [
    # First: X-Forwarded-Proto is believed from a trusted proxy only (SECURE_PROXY_SSL_HEADER).
    "jobadmin.middleware.TrustedProxyHeadersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # The Content Security Policy of every page (CONTENT_SECURITY_POLICY below).
    "csp.middleware.CSPMiddleware",
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
    "jobs.api.errors.DatabaseUnavailableMiddleware",
    # django-axes answers a locked-out login with 429 (after the outage middleware: its own
    # PermissionDenied must reach it).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "jobadmin.site_urls"
WSGI_APPLICATION = "jobadmin.wsgi.application"
ASGI_APPLICATION = "jobadmin.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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
        # One connection kept warm; the others are given back after JOBADMIN_DB_POOL_MAX_IDLE
        # seconds unused: a burst of requests must not keep the connections that workers need
        # (300 s held 7 idle connections under a role limit of 12 while every job waited).
        "min_size": min(1, JOBADMIN_DB_POOL_MAX),
        "max_size": JOBADMIN_DB_POOL_MAX,
        # A request that waits longer than this for a connection fails (PoolTimeout); while the
        # database is away it fails at once instead (jobadmin.db.base.FailFastPool).
        "timeout": env.float("JOBADMIN_DB_POOL_TIMEOUT", default=10.0),
        "max_idle": env.float("JOBADMIN_DB_POOL_MAX_IDLE", default=10.0),
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

if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend with every wait for the server bounded by JOBADMIN_DB_QUERY_TIMEOUT,
    # TCP keepalives and the server's idle-in-transaction time-out (jobadmin.db.base): a link
    # that goes silent is noticed within the outage grace, not after TCP's hours.
    DATABASES["default"]["ENGINE"] = "jobadmin.db"
# The longest one wait for PostgreSQL's answer (a query, a COMMIT) before its connection
# counts as dead; at most JOBADMIN_DB_OUTAGE_GRACE (jobs.W003). A migration that runs longer
# statements is run with a larger value (docs/deploy.md, "Partitions").
JOBADMIN_DB_QUERY_TIMEOUT = _env("JOBADMIN_DB_QUERY_TIMEOUT")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker, cache and channel layer ----------------------------------------------
REDIS_URL = _env("REDIS_URL")
REDIS_PREFIX = env.str("REDIS_PREFIX", default="jobadmin")

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": REDIS_PREFIX,
            # Redis away fails fast (the rate limits fall back, health says so) instead of
            # holding a request for the operating system's TCP time-out.
            "OPTIONS": dict(_conf.REDIS_TIMEOUTS),
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            # Not jobadmin.conf.REDIS_TIMEOUTS here: with them, a relay publishing through a
            # Redis restart lost events (tests/live/test_live_e2e.py, ..._layer_dies_...);
            # a silent layer Redis is still waited for (issue 21, open).
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
JOBADMIN_QUEUES: dict[str, int] = dict(_conf.DEFAULT_QUEUES)
JOBADMIN_MAX_JOB_TIMEOUT = _env("JOBADMIN_MAX_JOB_TIMEOUT")
JOBADMIN_HEARTBEAT_INTERVAL = _env("JOBADMIN_HEARTBEAT_INTERVAL")
JOBADMIN_CONTROL_POLL = _env("JOBADMIN_CONTROL_POLL")
# A running job whose heartbeat is older than this is stalled (its worker died). It must
# exceed JOBADMIN_DB_OUTAGE_GRACE by two heartbeats, or the grace is cut short (jobs.outage).
JOBADMIN_STALL_THRESHOLD = _env("JOBADMIN_STALL_THRESHOLD")
# A worker that loses the database keeps its job, its reports and its outcome for this long
# before it gives the job up to the stall sweep (jobs.outage; docs/engine.md).
JOBADMIN_DB_OUTAGE_GRACE = _env("JOBADMIN_DB_OUTAGE_GRACE")
JOBADMIN_LONG_RUNNING_THRESHOLD = _env("JOBADMIN_LONG_RUNNING_THRESHOLD")
# Progress reports are coalesced into at most one write per interval.
JOBADMIN_PROGRESS_INTERVAL = _env("JOBADMIN_PROGRESS_INTERVAL")
# A wake-up keeps claiming jobs of its queue for this long before handing over.
JOBADMIN_WAKEUP_BUDGET = _env("JOBADMIN_WAKEUP_BUDGET")
# Wake-ups counted in flight that no worker took within this many seconds are believed lost
# (Redis restarted empty): the next enqueue or hand-over sends a fresh one, monitor or not.
JOBADMIN_WAKEUP_LOST_AFTER = _env("JOBADMIN_WAKEUP_LOST_AFTER")
JOBADMIN_DISPATCH_INTERVAL = _env("JOBADMIN_DISPATCH_INTERVAL")
JOBADMIN_SCHEDULE_INTERVAL = _env("JOBADMIN_SCHEDULE_INTERVAL")
# A worker process told to stop (SIGTERM) suspends its job at the next checkpoint and exits;
# a job that reaches none within this many seconds follows its stall policy (jobs.shutdown).
JOBADMIN_SHUTDOWN_GRACE = _env("JOBADMIN_SHUTDOWN_GRACE")
JOBADMIN_HISTORY_DAYS = _env("JOBADMIN_HISTORY_DAYS")
JOBADMIN_PURGE_BATCH = _env("JOBADMIN_PURGE_BATCH")
JOB_STATS_INTERVAL = _env("JOB_STATS_INTERVAL")
# An SSE stream's keep-alive comment, and its re-check of access, every this many seconds (live.sse).
JOBADMIN_SSE_KEEPALIVE = _env("JOBADMIN_SSE_KEEPALIVE")
# Web processes: the garbage collector's young generation (live.relay.tune_gc); 0 keeps
# Python's 700, under which delivering frames triggered full collections that stalled sockets.
JOBADMIN_WEB_GC_THRESHOLD = _env("JOBADMIN_WEB_GC_THRESHOLD")
# The relay (live.relay): how often it reads the event log for new rows, and how long it
# waits for an event id that was skipped (a transaction still open, or rolled back).
JOBADMIN_RELAY_POLL = _env("JOBADMIN_RELAY_POLL")
# On PostgreSQL the relay is woken by LISTEN/NOTIFY (a trigger notifies at each commit of
# events) and reads the log only then, or every JOBADMIN_RELAY_SAFETY_POLL seconds in case a
# notification was missed (while its listening connection reconnected); SQLite, or false
# here (behind a transaction-pooling PgBouncer, where LISTEN does not work), polls.
JOBADMIN_RELAY_LISTEN = _env("JOBADMIN_RELAY_LISTEN")
JOBADMIN_RELAY_SAFETY_POLL = _env("JOBADMIN_RELAY_SAFETY_POLL")
JOBADMIN_RELAY_GAP_GRACE = _env("JOBADMIN_RELAY_GAP_GRACE")
# Where the relay runs: in the web process on the embedded default (no Redis: the channel
# layer lives in that process); with Redis in `monitor`, unless this puts it in the web
# process anyway (one daphne, no monitor).
JOBADMIN_RELAY_IN_WEB = env.bool("JOBADMIN_RELAY_IN_WEB", default=False) or not REDIS_URL
# The shortest time between two writes of one live gauge to the cache (relay lag, sockets).
JOBADMIN_GAUGE_INTERVAL = _env("JOBADMIN_GAUGE_INTERVAL")
# Daphne sends each connection's websocket frames once per event-loop turn instead of
# registering the socket for writability per frame (live/transport.py).
JOBADMIN_COALESCE_TCP_WRITES = _env("JOBADMIN_COALESCE_TCP_WRITES")

# --- Monitoring (docs/monitoring.md) ----------------------------------------------------------
JOBADMIN_METRICS_INTERVAL = _env("JOBADMIN_METRICS_INTERVAL")
JOBADMIN_METRICS_RETENTION_DAYS = _env("JOBADMIN_METRICS_RETENTION_DAYS")
JOBADMIN_ALERTS_INTERVAL = _env("JOBADMIN_ALERTS_INTERVAL")
# Statistics buckets (monitoring.rollup): folded with the alerts; this often the fold also
# recomputes the hours that lost jobs (deletions); changes this recent are always re-read
# from the raw rows.
JOBADMIN_ROLLUP_REBUILD = _env("JOBADMIN_ROLLUP_REBUILD")
JOBADMIN_ROLLUP_MARGIN = _env("JOBADMIN_ROLLUP_MARGIN")
JOBADMIN_WEBHOOK_TIMEOUT = _env("JOBADMIN_WEBHOOK_TIMEOUT")
JOBADMIN_WEBHOOK_RETRIES = _env("JOBADMIN_WEBHOOK_RETRIES")
# Alert webhooks reach only global addresses, and these networks ("10.0.0.0/8", "127.0.0.1").
JOBADMIN_WEBHOOK_ALLOWED_NETWORKS = _env("JOBADMIN_WEBHOOK_ALLOWED_NETWORKS")
ALERT_EMAIL_FROM = _env("ALERT_EMAIL_FROM")
# /api/health/: more than N failures in the window is critical; a job running longer than
# the long-running threshold, or more than N active jobs, is a warning.
HEALTH_FAILURES_CRITICAL = _env("HEALTH_FAILURES_CRITICAL")
HEALTH_FAILURES_WINDOW = _env("HEALTH_FAILURES_WINDOW")
HEALTH_ACTIVE_WARNING = _env("HEALTH_ACTIVE_WARNING")
# The monitor's lease (jobadmin.singleton), seconds: a leader that could not renew it for
# 0.6 of this stops its duties; a standby that takes over starts them this long after it
# took the lock. Takeover after a leader dies: about this plus a second.
JOBADMIN_MONITOR_LEASE = _env("JOBADMIN_MONITOR_LEASE")
# Live updates arriving later than this (seconds; the relay's lag) make health a warning.
HEALTH_RELAY_LAG_WARNING = _env("HEALTH_RELAY_LAG_WARNING")
# The monitor counts as down when its heartbeat is older than this (seconds).
HEALTH_MONITOR_STALE = _env("HEALTH_MONITOR_STALE")
# /metrics: a request with "Authorization: Bearer <token>", or one from these client addresses.
# The addresses default to loopback only while no token is set: once one is, the token is
# required unless addresses are named explicitly (jobs.policy.may_scrape_metrics).
PROMETHEUS_TOKEN = _env("PROMETHEUS_TOKEN")
PROMETHEUS_ALLOWED_IPS = env.list("PROMETHEUS_ALLOWED_IPS", default=[] if PROMETHEUS_TOKEN else ["127.0.0.1", "::1"])

# --- Access (docs/security.md) ----------------------------------------------------------------
# Reverse proxies (addresses or networks) whose X-Forwarded-For / X-Forwarded-Proto are believed;
# from any other peer the connecting address is the client's.
JOBADMIN_TRUSTED_PROXIES = _env("JOBADMIN_TRUSTED_PROXIES")
# Frontends on other origins ("https://app.example.com"): they get CORS headers on /api/ and may
# open the websocket; a request's own origin is always allowed.
JOBADMIN_CORS_ORIGINS = _env("JOBADMIN_CORS_ORIGINS")
# django-cors-headers answers preflights under /api/ and asks jobs.policy (its
# check_request_enabled signal) which origins get the headers: JOBADMIN_CORS_ORIGINS is the one
# list, so its own stays empty.
CORS_ALLOWED_ORIGINS: list[str] = []
# Management commands the ``management-command`` job type may run (docs/cli.md), comma-separated;
# running them also needs the jobs.run_management_command permission.
JOBADMIN_COMMANDS = _env("JOBADMIN_COMMANDS")
CORS_URLS_REGEX = r"^/api/"
# Cross-origin frontends authenticate with a token (Authorization header), not the session cookie.
CORS_ALLOW_CREDENTIALS = False

# --- Websocket limits and access (docs/security.md, "Websocket limits and access") ----------
# Every open socket's user, session or token and subscriptions are checked again this often
# (seconds; once per user and process for all of its sockets): a revoked permission, a
# deactivated user, a logout or a deleted token reaches an open socket within this time.
JOBADMIN_WS_REAUTH_INTERVAL = _env("JOBADMIN_WS_REAUTH_INTERVAL")
# Open sockets per user (over every web process when REDIS_URL is set); one more is refused.
JOBADMIN_WS_MAX_SOCKETS_PER_USER = _env("JOBADMIN_WS_MAX_SOCKETS_PER_USER")
# Subscriptions one socket may hold (its own user channel included).
JOBADMIN_WS_MAX_SUBSCRIPTIONS = _env("JOBADMIN_WS_MAX_SUBSCRIPTIONS")

# django-q2's hard time-out of one task (a wake-up): a wake-up starts a job only if the job's
# own time-out fits in what is left of it (jobs.tasks.Budget), so this never kills a job
# within its time-out; time paused does not count (a paused job holds no worker). Above the
# longest job it leaves room for an outcome that waits out a database outage.
Q_TIMEOUT = env.int("Q_TIMEOUT", default=_conf.q_timeout(JOBADMIN_MAX_JOB_TIMEOUT, JOBADMIN_DB_OUTAGE_GRACE))
Q_CLUSTER = _conf.q_cluster(
    name=env.str("Q_CLUSTER_NAME", default="jobadmin"),
    workers=env.int("Q_WORKERS", default=sum(JOBADMIN_QUEUES.values())),
    timeout=Q_TIMEOUT,
    poll=env.float("Q_POLL", default=0.1),
    redis_url=REDIS_URL,
)

# Django's task framework (django.tasks on Django 6, the django-tasks backport on 5.2): a
# ``@task`` function's ``.enqueue()`` becomes a JobAdmin job (docs/django-tasks.md).
TASKS = {"default": {"BACKEND": "jobs.django_tasks.JobAdminBackend"}}

# --- API ------------------------------------------------------------------------------------
# JobAdmin's views carry their own DRF settings (jobs.api.settings): this project sets no
# REST_FRAMEWORK and no SPECTACULAR_SETTINGS, as a host need not. Only the rates are settings.
JOBADMIN_API_THROTTLE_RATES = {
    "user": env.str("API_THROTTLE_USER", default="6000/min"),
    "anon": env.str("API_THROTTLE_ANON", default="120/min"),
    "enqueue": env.str("API_THROTTLE_ENQUEUE", default="600/min"),
    "token": env.str("API_THROTTLE_TOKEN", default="20/min"),
}

# --- Bounded input (docs/security.md, "Input limits"; jobs.limits, jobs.api.input) -----------
# Each string in a job's params (dictionary keys too), in characters; the whole params
# document, in bytes of compact UTF-8 JSON; how deep a JSON body or params may nest.
JOBADMIN_MAX_PARAM_STRING = _env("JOBADMIN_MAX_PARAM_STRING")
JOBADMIN_MAX_PARAMS_BYTES = _env("JOBADMIN_MAX_PARAMS_BYTES")
JOBADMIN_MAX_JSON_DEPTH = _env("JOBADMIN_MAX_JSON_DEPTH")
JOBADMIN_BULK_ENQUEUE_MAX = _env("JOBADMIN_BULK_ENQUEUE_MAX")
JOBADMIN_BATCH_MAX = _env("JOBADMIN_BATCH_MAX")
# Django's own cap on a request body read into memory (forms, and the API's JSON parser):
# 1 MiB instead of Django's 2.5 MB; a larger API body is a 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=1_048_576)

# --- Admin login (docs/security.md, "Admin login") --------------------------------------------
# django-axes counts failed logins per client address (read by the access policy, so a spoofed
# X-Forwarded-For is not a new address) in the database, where the admin shows them; past the
# limit the address is locked out for the cool-off, the right password included.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("JOBADMIN_LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(seconds=env.int("JOBADMIN_LOGIN_COOLOFF", default=900))
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
AXES_CLIENT_IP_CALLABLE = "jobs.policy.request_client_address"
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
# No start-up banner on standard output (commands whose output is read, such as `shell -c`).
AXES_VERBOSE = False

# --- HTTPS and browser security (docs/deploy.md, docs/security.md "Production settings") ----
# DJANGO_HTTPS=true where the site is served over HTTPS (directly or behind a TLS proxy named in
# JOBADMIN_TRUSTED_PROXIES): plain HTTP is redirected, cookies are Secure, and browsers are told
# to use HTTPS only (HSTS) for DJANGO_HSTS_SECONDS. `manage.py check --deploy` is then clean.
HTTPS = env.bool("DJANGO_HTTPS", default=False)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31_536_000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", default=HTTPS)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_HSTS_PRELOAD", default=False)
# The health probe of a load balancer speaks plain HTTP to the process.
SECURE_REDIRECT_EXEMPT = [r"^api/health/$"]
# Only a trusted proxy's X-Forwarded-Proto reaches Django (jobadmin.middleware).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# Every staff page runs on its own static files: no inline script, no other origin. Styles set
# from scripts (progress bars, Chart.js) are CSSOM, which style-src does not stop; the admin's
# own templates carry a few style attributes, hence 'unsafe-inline' for styles only.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        # ReDoc (/api/redoc/) builds its search index in a worker made from a blob: URL.
        "worker-src": ["'self'", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# drf-spectacular's deploy check builds the schema with the project's global settings, not with
# JobAdmin's (jobs.api.settings.SPECTACULAR), and so reports enum names JobAdmin's own settings
# resolve; tests/test_openapi.py checks JobAdmin's schema as it is served.
SPECTACULAR_SETTINGS = {"ENABLE_DJANGO_DEPLOY_CHECK": False}

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
# Every template, script, style and browser library (Chart.js, vendored) is in its app's own
# templates/ and static/ folders, as the installed package ships them: no project folders.
WHITENOISE_USE_FINDERS = True
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(DATA_DIR / "media")))

# Mail, from one EMAIL_URL that django-environ parses (smtp://user:password@host:25,
# smtp+tls://…:587, smtp+ssl://…:465, consolemail://). Django 6.1 configures mail as MAILERS,
# with the server in OPTIONS, and deprecates the EMAIL_* settings (RemovedInDjango2028Warning);
# Django 5.2 knows only the EMAIL_* settings. The branch goes with Django 5.2.
_email = env.email_url("EMAIL_URL", default="consolemail://")
if django.VERSION >= (6, 1):
    _smtp = {"host": "EMAIL_HOST", "port": "EMAIL_PORT", "username": "EMAIL_HOST_USER"}
    _smtp |= {"password": "EMAIL_HOST_PASSWORD", "use_tls": "EMAIL_USE_TLS", "use_ssl": "EMAIL_USE_SSL"}
    _options = {option: _email[key] for option, key in _smtp.items() if _email.get(key) is not None}
    MAILERS = {"default": {"BACKEND": _email["EMAIL_BACKEND"], "OPTIONS": _options}}
else:
    EMAIL_BACKEND = _email["EMAIL_BACKEND"]
    EMAIL_HOST = _email["EMAIL_HOST"] or "localhost"
    EMAIL_PORT = _email["EMAIL_PORT"] or 25
    EMAIL_HOST_USER = _email["EMAIL_HOST_USER"] or ""
    EMAIL_HOST_PASSWORD = _email["EMAIL_HOST_PASSWORD"] or ""
    EMAIL_USE_TLS = bool(_email.get("EMAIL_USE_TLS"))
    EMAIL_USE_SSL = bool(_email.get("EMAIL_USE_SSL"))
# Alert e-mails of a rule without recipients go to these (Django's own setting).
ADMINS: list[tuple[str, str]] = []

# `manage.py runall` (`make run`): where the web server listens unless --host/--port say.
JOBADMIN_RUNALL_HOST = env.str("HOST", default="127.0.0.1")
JOBADMIN_RUNALL_PORT = env.int("PORT", default=8000)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # django-q2 logs as "django-q"; at INFO it writes a line for every task it enqueues and runs.
    "loggers": {"django-q": {"level": env.str("Q_LOG_LEVEL", default="WARNING")}},
}

# --- Fair queues (docs/engine.md, "The scheduler's rule") ---
# Each user's share of a queue's slots, as a fraction of its concurrency: ceil(share x limit),
# at least one slot. A user holding their share takes another slot only while no other
# user's job waits in that queue (jobs without a user count as one owner, the system).
# 1 turns the rule off. A value outside (0, 1] is a system-check error (jobs.E001).
JOBADMIN_USER_QUEUE_SHARE = _env("JOBADMIN_USER_QUEUE_SHARE")
