# BTC Watcher: one image for web, gateway, supervisor, worker and cron (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FLASK_APP=app \
    BTCW_VAR_DIR=/data

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential curl postgresql-client redis-tools sqlite3 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
RUN useradd --create-home --uid 1000 btcw \
    && mkdir -p /data \
    && chown -R btcw:btcw /data /app/user_data

USER btcw
EXPOSE 8000 8080
HEALTHCHECK --interval=30s --timeout=5s CMD curl -fsS http://127.0.0.1:8000/health || exit 1
CMD ["gunicorn", "-k", "gevent", "-w", "2", "-b", "0.0.0.0:8000", "--no-control-socket", "wsgi:web()"]
