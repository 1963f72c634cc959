"""The jobs API (DRF): views, routes, serializers, schema, parsers, pagination, permissions,
throttles and errors, above the engine (the rest of ``jobs``), which it calls and never the
other way round (DESIGN.md "Layout"; the import contract in pyproject.toml)."""
