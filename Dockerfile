# plivo-verify-gateway: production image (GraphiQL and introspection off).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install --no-cache-dir --prefix=/install .

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
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GATEWAY_PORT', '8000'), timeout=2)"]
CMD ["plivo-gateway", "serve"]
