FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core core
COPY connectors connectors
COPY api api
COPY workers workers
COPY config config
COPY mappings mappings
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["qloop"]
