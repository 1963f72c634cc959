"""Benchmarks: scripts that print figures. They are not tests and never fail a build."""
