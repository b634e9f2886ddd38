# The streaming worker: `docker compose up` runs it against the compose Kafka and Redis.
# The builder compiles the core with mypyc (scripts/build_core.py, as `make core`); the image runs that build.

# the same base as the final stage, so the extension modules match its Python and glibc
FROM python:3.11-slim AS builder

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# mypyc's C compiler, in this stage only
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY segmenter ./segmenter
COPY streams ./streams
COPY scripts/build_core.py ./scripts/
# mypy's stub of quicktions (pyproject's mypy_path), which ships none
COPY stubs ./stubs
# the dependencies (mypy checks against them), mypy and stubs as in the developers' venv, build_core's setuptools
RUN pip install -e . mypy==2.4.1 types-PyYAML==6.0.12.20261122 "setuptools>=65" \
    && python scripts/build_core.py
# the runtime, without mypy: editable, so it imports /app, where the extension modules sit beside the sources
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install -e .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app/schemas ./schemas
COPY --from=builder /app/segmenter ./segmenter
COPY --from=builder /app/streams ./streams
# the image must run the compiled core: the build fails if the package imports the sources (-P: not the cwd's)
RUN python -P -c 'import segmenter.engine as e; assert e.__file__.endswith(".so"), e.__file__' \
    && useradd --create-home --uid 10001 segmenter \
    && mkdir -p /var/lib/segmenter && chown segmenter /var/lib/segmenter

USER segmenter
# RocksDB state lives here; a volume keeps it across restarts (faster recovery)
ENV SEGMENTER_DATA_DIR=/var/lib/segmenter
EXPOSE 6066
ENTRYPOINT ["segmenter"]
CMD ["worker"]
