# plivo-verify-gateway: production image (GraphiQL and introspection off).
#
# Give it PLIVO_AUTH_ID, PLIVO_AUTH_TOKEN and GATEWAY_API_KEYS (name:sha256-of-key:scopes);
# GATEWAY_PUBLIC_URL, the URL at which Plivo reaches this container, or status callbacks are
# off; GATEWAY_CACHE_URL=redis://... to share state between instances. compose.yaml runs it
# with Redis and the built-in Plivo simulator, with no Plivo account.
#
# Stopping: SIGTERM, then the gateway drains for GATEWAY_SHUTDOWN_GRACE (10 s by default).
# `docker stop` waits only 10 s before it kills, so give the container longer than the grace:
# docker run --stop-timeout 15 (compose.yaml: stop_grace_period: 15s).
FROM python:3.11-slim AS build
WORKDIR /src
# The dependencies first, pinned with hashes (a layer kept while only the code changes).
COPY requirements.lock ./
RUN pip install --no-cache-dir --prefix=/install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install --no-cache-dir --prefix=/install --no-deps .

FROM python:3.11-slim
ENV GATEWAY_ENV=production \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8000 \
    PYTHONUNBUFFERED=1
COPY --from=build /install /usr/local
RUN groupadd --gid 10001 gateway \
    && useradd --no-log-init --create-home --uid 10001 --gid 10001 gateway
USER 10001:10001
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GATEWAY_PORT', '8000'), timeout=2)"]
CMD ["plivo-gateway", "serve"]
