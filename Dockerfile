# syntax=docker/dockerfile:1
#
# The churnstream application image: one image, every command.
#
#   docker build -t churnstream:local .
#   docker run --rm churnstream:local --help
#   docker run --rm -e KAFKA_BOOTSTRAP_SERVERS=kafka:9092 -e REDIS_URL=redis://redis:6379/0 \
#       churnstream:local worker
#
# Two stages: `build` resolves and installs the runtime dependencies into a virtualenv
# (in a layer that only changes when pyproject.toml does), then installs the project itself
# (non-editable, no dev extras); `runtime` copies just that virtualenv onto a clean slim
# base and runs as an unprivileged user.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build -----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Every dependency ships manylinux wheels for x86_64 (librdkafka is inside the
# confluent-kafka wheel), so amd64 needs no compiler. faust-streaming publishes no aarch64
# wheel: on arm64 (e.g. Apple silicon) pip builds it from source, and its C speedups need
# gcc and zlib headers. They stay in this stage only.
RUN case "$(dpkg --print-architecture)" in \
        amd64) ;; \
        *) apt-get update \
           && apt-get install -y --no-install-recommends gcc libc6-dev zlib1g-dev \
           && rm -rf /var/lib/apt/lists/* ;; \
    esac

RUN python -m venv "$VIRTUAL_ENV" \
    && pip install --upgrade pip

WORKDIR /src

# Dependencies only, read from pyproject.toml: this (slow) layer is rebuilt only when
# pyproject.toml changes, not on every source edit.
COPY pyproject.toml ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# The project itself. setuptools needs the package directories (and README.md, named in
# pyproject.toml) to build; .dockerignore keeps tests, caches and local state out.
COPY . .
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps . \
    && pip check \
    && churnstream --help > /dev/null

# --- runtime ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="churnstream" \
      org.opencontainers.image.description="Real-time churn scoring: Kafka events -> Faust worker -> Redis -> FastAPI" \
      org.opencontainers.image.licenses="Apache-2.0"

ARG APP_UID=10001
RUN groupadd --system --gid "$APP_UID" churn \
    && useradd --system --uid "$APP_UID" --gid churn --home-dir /app --shell /usr/sbin/nologin churn \
    && mkdir -p /app \
    && chown churn:churn /app

COPY --from=build /opt/venv /opt/venv

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONFAULTHANDLER=1 \
    CHURN_LOG_FORMAT=json

# The working directory is where relative settings resolve (CHURN_RUN_DIR=.run, a .env
# file); it is writable by the app user. Mount a volume here to keep local state.
WORKDIR /app
USER churn:churn

# Python only gets a default handler for SIGINT: make `docker stop` send it, so commands
# without their own SIGTERM handler still shut down cleanly instead of being killed.
STOPSIGNAL SIGINT

ENTRYPOINT ["churnstream"]
CMD ["--help"]
