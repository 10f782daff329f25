"""The HTTP API (FastAPI) under /api/v1: deliveries, traces, the fleet, with roles."""
