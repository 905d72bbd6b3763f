# source-openai-compatible as an Airbyte connector image (Airbyte's Python connector conventions:
# the entrypoint command in AIRBYTE_ENTRYPOINT and as ENTRYPOINT, io.airbyte.* labels, non-root).
#
#   docker build -t source-openai-compatible:0.1.0 .
#   docker run --rm source-openai-compatible:0.1.0 spec
#
# `make test` builds this file unchanged with podman and runs the image (tests/test_image.py,
# scripts/container_image.sh); docs/CONTAINER.md says how to run it with docker or podman.

# The base, pinned by digest: python:3.11-slim-bookworm's multi-platform index as published on
# 2026-08-25 (docker-library/repo-info). Renew with `docker buildx imagetools inspect
# python:3.11-slim-bookworm`. The tests build on machines without a registry and pass a local
# stand-in here (--build-arg BASE_IMAGE=...): a Debian bookworm rootfs with Python 3.11, made by
# scripts/container_image.sh, which cannot carry this digest.
ARG BASE_IMAGE=python:3.11-slim-bookworm@sha256:0bee7276f83efd4a1ee05bbbf4281d95ed28e079220a9457f25a93e3f1e3c31b

FROM ${BASE_IMAGE} AS build
WORKDIR /src
# The exact dependency versions first (scripts/lock_requirements.sh): two builds install the same
# versions, and this layer stays cached until the lock changes.
COPY requirements.lock ./
RUN pip install --no-cache-dir --prefix=/install -r requirements.lock
COPY pyproject.toml README.md ./
COPY connector ./connector
RUN pip install --no-cache-dir --prefix=/install --no-deps .

FROM ${BASE_IMAGE}
COPY --from=build /install /usr/local
# The connector was installed with --no-deps: prove the locked set satisfies its requirements.
RUN pip check
# The answer cache's folder exists and belongs to the user, so a volume mounted on it
# (-v answers:/home/airbyte/.cache) starts as theirs: docker gives a new named volume the owner of
# the folder it is mounted over, and root's when there is none (podman chowns it either way).
RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin airbyte \
    && install -d -o airbyte -g airbyte /home/airbyte/.cache
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    XDG_CACHE_HOME=/home/airbyte/.cache \
    AIRBYTE_ENTRYPOINT="source-openai-compatible"
WORKDIR /airbyte/integration_code
USER airbyte
LABEL io.airbyte.name=airbyte/source-openai-compatible \
      io.airbyte.version=0.1.0
ENTRYPOINT ["source-openai-compatible"]
