# The image of one service; the three are built from this one file. Build from the repository root
# with the service's name and port (compose.yaml's build sections pass them):
#   docker build --build-arg SERVICE=orders --build-arg PORT=8001 -t deliveryhub/orders:local .
# Only the workspace members the service needs go in: contracts, kit and services/SERVICE, whose
# distribution is deliveryhub-SERVICE and whose app factory is deliveryhub_SERVICE.app:create_app.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
# The dependencies from uv.lock, in a layer of their own: a change of code does not reinstall them.
COPY pyproject.toml uv.lock ./
COPY packages/contracts/pyproject.toml packages/contracts/
COPY packages/kit/pyproject.toml packages/kit/
# Declared after the layers the three images share, so that those stay cached across them.
ARG SERVICE
COPY services/${SERVICE}/pyproject.toml services/${SERVICE}/
RUN uv sync --frozen --no-dev --no-install-workspace --package "deliveryhub-${SERVICE}"
COPY packages/contracts/src packages/contracts/src
COPY packages/kit/src packages/kit/src
COPY services/${SERVICE}/src services/${SERVICE}/src
RUN uv sync --frozen --no-dev --no-editable --package "deliveryhub-${SERVICE}"

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/app/.venv/bin:$PATH"
# One unprivileged user, the same id in every image, owning the mount points of the key volumes.
RUN groupadd --system --gid 10001 deliveryhub \
    && useradd --system --uid 10001 --gid deliveryhub --no-create-home --home-dir /nonexistent deliveryhub \
    && install -d -o deliveryhub -g deliveryhub -m 0700 /var/lib/deliveryhub/keys \
    && install -d -o deliveryhub -g deliveryhub -m 0755 /var/lib/deliveryhub/public-keys
COPY --from=build /app/.venv /app/.venv
WORKDIR /app
# Build arguments end with the build: the health check and the command read these instead, each
# through a shell that fills them in and then execs the program (uvicorn is PID 1, SIGTERM reaches it).
ARG SERVICE
ARG PORT
ENV DELIVERYHUB_SERVICE=${SERVICE} \
    DELIVERYHUB_PORT=${PORT}
USER 10001:10001
EXPOSE ${PORT}
# Slim images have no curl; the standard library asks instead.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["sh", "-c", "exec python -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:${DELIVERYHUB_PORT}/health/live', timeout=2)\""]
# uvicorn stops on SIGTERM: it closes the listener, lets requests and messages in flight finish
# (up to the graceful timeout), then the lifespan stops the consumers and the outbox relay.
STOPSIGNAL SIGTERM
CMD ["sh", "-c", "exec uvicorn --factory deliveryhub_${DELIVERYHUB_SERVICE}.app:create_app --host 0.0.0.0 --port ${DELIVERYHUB_PORT} --timeout-graceful-shutdown 20 --no-server-header"]
