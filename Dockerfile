# The embedded default in one container: web UI and scheduler, data on a volume.
FROM python:3.11-slim
# Optional extras: e.g. --build-arg EXTRAS="[postgres,celery]" for the distributed set-up.
ARG EXTRAS=""

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    ARCHIVER_DATA_DIR=/data ARCHIVER_WEB__HOST=0.0.0.0 ARCHIVER_WEB__PORT=8000

WORKDIR /app
COPY pyproject.toml README.md ./
COPY archiver ./archiver
COPY web ./web
RUN pip install --no-cache-dir ".${EXTRAS}" && useradd --create-home --uid 10001 archiver \
    && mkdir -p /data && chown archiver /data

USER archiver
VOLUME ["/data"]
EXPOSE 8000
# `init` is safe to repeat: it creates or migrates the database, then the service starts.
CMD ["sh", "-c", "archiver init && exec archiver serve"]
