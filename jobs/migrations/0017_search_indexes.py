"""Indexes for the job list's ``search`` and ``params.<key>=<value>`` filters, on PostgreSQL.

- ``job_search_trgm``: pg_trgm's GIN over ``UPPER(<the search text>)``, the expression
  ``jobs.filters.JobSearchText`` writes (id, type, the parameters' values, error). Django's
  ``icontains`` there is ``UPPER(x::text) LIKE UPPER('%term%')``, which this index answers for
  a term of three characters or more. The SQL is copied here, not imported: a migration must
  not change when the code does (tests/jobs/test_search.py checks that the plan uses it).
- ``job_params_gin``: GIN ``jsonb_path_ops`` over ``params``, for the containment test
  (``params @> '{"items": 5}'``) the ``params.<key>`` filter starts with.

The statistics of the search text are finer than the default (see below); ANALYZE of the job
table then samples 300,000 rows instead of 30,000.

Built ``CONCURRENTLY`` (so the migration is not atomic): on a large history the build takes
a while (docs/benchmarks.md) and must not block enqueues and workers meanwhile. Creating the
extension needs a role allowed to (pg_trgm is a "trusted" extension: the database's owner
may). On SQLite (the embedded default) there is nothing to do: the search is a scan there.
"""

from django.db import migrations

SEARCH_TEXT = (
    "(id::text || ' ' || type || ' ' || jsonb_path_query_array(params, "
    "'strict $.** ? (@.type() != \"object\" && @.type() != \"array\")')::text || ' ' || error)"
)
FORWARDS = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    f"CREATE INDEX CONCURRENTLY IF NOT EXISTS job_search_trgm ON jobs_job USING gin (UPPER({SEARCH_TEXT}) gin_trgm_ops)",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS job_params_gin ON jobs_job USING gin (params jsonb_path_ops)",
    # A finer histogram of the search text (1,001 bounds, not 101): the planner then tells a term
    # that matches a few jobs in ten thousand (read the index, sort the matches) from a common one
    # (walk the newest jobs and stop at a page). At 100 both looked rare: a type searched in a
    # million jobs read 26,000 pages for its 5,825 matches (4.9 s cold) instead of the newest 8,600 rows.
    "ALTER INDEX job_search_trgm ALTER COLUMN 1 SET STATISTICS 1000",
]
# The extension stays: something else may use it.
BACKWARDS = [
    "DROP INDEX CONCURRENTLY IF EXISTS job_search_trgm",
    "DROP INDEX CONCURRENTLY IF EXISTS job_params_gin",
]


def _run(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for statement in statements:
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("jobs", "0016_batch"),
    ]

    operations = [
        migrations.RunPython(_run(FORWARDS), _run(BACKWARDS)),
    ]
