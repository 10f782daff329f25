# One image for every coldtrace service in docker-compose.yml (ingest, api). Not exercised in
# CI (no Docker engine on the build machines); `make test` checks that this file's COPY list
# installs and migrates (tests/integration/test_packaging.py).
FROM python:3.11.11-slim
# The font the certificates' PDFs embed (Typst finds it among the system's fonts).
RUN apt-get update && apt-get install -y --no-install-recommends fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY requirements/app.txt requirements/app.txt
COPY coldtrace coldtrace
COPY ingest ingest
COPY alerts alerts
COPY simulators simulators
COPY dashboards dashboards
COPY gateway gateway
# urllib3-future (grafana-client's niquests) built beside urllib3, not over it: deploy/bootstrap.sh
RUN URLLIB3_NO_OVERRIDE=1 pip install --no-cache-dir --require-hashes \
        --no-binary urllib3-future -r requirements/app.txt \
    && pip install --no-cache-dir --no-deps .
RUN mkdir -p /var/lib/coldtrace && chown nobody /var/lib/coldtrace
USER nobody
CMD ["coldtrace", "ingest"]
