# qloop: one image for every role — `serve` (HTTP API), `worker` (RQ), `scheduler` (cron leader).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    QLOOP_CONFIG=/etc/qloop/qloop.yaml

WORKDIR /app
# The pinned runtime dependencies first (a layer of their own), then qloop
# without resolving anything else: the image has exactly the tested versions.
COPY requirements.lock ./
RUN pip install -r requirements.lock
COPY pyproject.toml README.md ./
COPY core core
COPY connectors connectors
COPY api api
COPY workers workers
COPY config config
COPY mappings mappings
RUN pip install --no-deps . \
 && pip check \
 && useradd --system --uid 10001 --home-dir /var/lib/qloop --shell /usr/sbin/nologin qloop \
 && mkdir -p /var/lib/qloop /etc/qloop \
 && chown qloop:qloop /var/lib/qloop

USER qloop
VOLUME ["/var/lib/qloop"]
EXPOSE 8000
# Exec form: qloop is PID 1 and gets SIGTERM itself (RQ warm shutdown, scheduler resigns).
ENTRYPOINT ["qloop"]
CMD ["--help"]
