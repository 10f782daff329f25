# One image for every coldtrace service in docker-compose.yml (ingest, api). Not exercised in
# CI (no Docker engine on the build machines); `make test` checks that this file's COPY list
# installs and migrates (tests/integration/test_packaging.py).
FROM python:3.11.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY coldtrace coldtrace
COPY ingest ingest
COPY alerts alerts
COPY deliveries deliveries
COPY api api
COPY migrations migrations
COPY simulators simulators
COPY dashboards dashboards
COPY gateway gateway
# urllib3-future (grafana-client's niquests) beside urllib3, not over it: deploy/bootstrap.sh
RUN URLLIB3_NO_OVERRIDE=1 pip install --no-cache-dir --no-binary urllib3-future "urllib3-future>=2.12"
RUN pip install --no-cache-dir .
RUN mkdir -p /var/lib/coldtrace && chown nobody /var/lib/coldtrace
USER nobody
CMD ["coldtrace", "ingest"]
