"""Which kind of process this is: set by its entry point before Django loads the settings.

``jobadmin.asgi`` and ``jobadmin.wsgi`` mark a web process, whose database connections
come from a pool (``JOBADMIN_DB_POOL_MAX``, see the settings); every other process (the
workers, the monitor, commands, tests) keeps persistent connections. A module attribute,
not an environment variable, so that nothing a web process starts inherits it.
"""

kind = "command"


def mark_web() -> None:
    global kind
    kind = "web"
