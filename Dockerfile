# OneDoor server image: `docker build -t onedoor .` (see docs/deployment.md).
FROM python:3.11-slim

# espeak-ng: the boards' spoken calls rendered on the server (optional: boards fall back to
# the browser's voice); fonts: Chinese on printed tickets drawn as images.
RUN apt-get update \
    && apt-get install -y --no-install-recommends espeak-ng fonts-wqy-zenhei \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 onedoor
WORKDIR /app
COPY pyproject.toml README.md ./
COPY queue_server ./queue_server
COPY display ./display
COPY printer ./printer
COPY booking ./booking
RUN pip install --no-cache-dir . && rm -rf /root/.cache

USER onedoor
ENV ONEDOOR_HOST=0.0.0.0 \
    ONEDOOR_PORT=8000 \
    ONEDOOR_VAR_DIR=/var/lib/onedoor \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/onedoor"]
EXPOSE 8000
# Liveness only: readiness (database, schema, Redis) is /readyz, for the balancer.
HEALTHCHECK --interval=15s --timeout=3s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=2)"
# Migrations run once, by the `migrate` service of deploy/compose.yaml; hosts never race on them.
CMD ["onedoor", "serve", "--no-migrate"]
