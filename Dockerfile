FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PBX_BRIDGE_STORAGE__PATH=/data/pbx-bridge.db \
    PBX_BRIDGE_LOG__FORMAT=json

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bridge ./bridge
COPY adapters ./adapters
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home /data bridge \
    && mkdir -p /data && chown bridge /data && chmod 0700 /data

USER bridge
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"
CMD ["pbx-bridge", "serve"]
