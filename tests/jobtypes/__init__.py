"""Throwaway job types for the engine's real-process tests.

Worker processes started by those tests load this app (``JOBADMIN_TEST_JOBTYPES=1`` makes
``tests/settings.py`` install it, and the registry's autodiscovery imports its ``jobs``
module); the test process itself registers them through the ``test_job_types`` fixture,
which removes them again so that no other test sees them.
"""
