# The datafold-dynamo worker image (also runs the exporter and the `datafold` CLI).
#   docker build -t datafold-dynamo:local .
#   docker run --rm -e DATAFOLD_REDIS_URL=redis://redis:6379/0 ... datafold-dynamo:local
# Serves /metrics on 0.0.0.0:9100 (DATAFOLD_METRICS_PORT / DATAFOLD_METRICS_ADDR). Runs as an
# unprivileged user; no credentials are baked in (AWS credentials come from the environment or
# the instance role, as boto3's default chain finds them).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY storage ./storage
COPY pipeline ./pipeline
COPY worker ./worker
COPY producers ./producers
RUN pip install . \
    && useradd --system --uid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin datafold

USER 10001
ENV DATAFOLD_METRICS_PORT=9100 \
    DATAFOLD_METRICS_ADDR=0.0.0.0
EXPOSE 9100
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9100/metrics', timeout=4)"]
CMD ["celery", "-A", "worker", "worker", "--loglevel", "INFO", "-Q", "writes,bulk"]
