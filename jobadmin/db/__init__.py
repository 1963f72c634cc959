"""JobAdmin's PostgreSQL backend: Django's own, whose every wait for the server is bounded
(``ENGINE = "jobadmin.db"``; see ``jobadmin.db.base``)."""
