# Image for `coldtrace ingest` (and later the API) in docker-compose.yml. Untested in CI.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY coldtrace coldtrace
COPY ingest ingest
COPY simulators simulators
RUN pip install --no-cache-dir .
RUN mkdir -p /var/lib/coldtrace && chown nobody /var/lib/coldtrace
USER nobody
CMD ["coldtrace", "ingest"]
