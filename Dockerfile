# The streaming worker: `docker compose up` runs it against the compose Kafka and Redis.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY segmenter ./segmenter
COPY streams ./streams
RUN pip install . \
    && useradd --create-home --uid 10001 segmenter \
    && mkdir -p /var/lib/segmenter && chown segmenter /var/lib/segmenter

USER segmenter
# RocksDB state lives here; a volume keeps it across restarts (faster recovery)
ENV SEGMENTER_DATA_DIR=/var/lib/segmenter
EXPOSE 6066
ENTRYPOINT ["segmenter"]
CMD ["worker"]
