"""Alembic migrations of every table on ``coldtrace.db.Base.metadata``; run them with
``coldtrace db upgrade`` (or ``coldtrace.db.upgrade``), which the API and ingest call at start."""
