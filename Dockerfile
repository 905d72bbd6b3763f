# source-openai-compatible as an Airbyte connector image (Airbyte's Python connector conventions:
# the entrypoint command in AIRBYTE_ENTRYPOINT and as ENTRYPOINT, io.airbyte.* labels, non-root).
#
#   docker build -t source-openai-compatible:0.1.0 .
#   docker run --rm source-openai-compatible:0.1.0 spec
#
# tests/test_container.py reads this file and runs the same entrypoint, with the same files
# installed the same way, in a fresh virtualenv (no Docker engine runs on the test machines).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY connector ./connector
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin airbyte
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    XDG_CACHE_HOME=/home/airbyte/.cache \
    AIRBYTE_ENTRYPOINT="source-openai-compatible"
WORKDIR /airbyte/integration_code
USER airbyte
LABEL io.airbyte.name=airbyte/source-openai-compatible \
      io.airbyte.version=0.1.0
ENTRYPOINT ["source-openai-compatible"]
