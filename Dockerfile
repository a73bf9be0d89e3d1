# Watchpost: one image for every process (web, workers, beat, migrate);
# docker-compose.yml picks the process by its command.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed uid/gid so files on mounted volumes keep one owner across rebuilds.
RUN groupadd --system --gid 10001 watchpost \
    && useradd --system --uid 10001 --gid watchpost --home-dir /app \
       --shell /usr/sbin/nologin watchpost

WORKDIR /app

# Runtime dependencies only (requirements-dev.txt stays out of the image).
# Installed before the code is copied so a code change reuses this layer.
COPY requirements.txt ./
RUN pip install --requirement requirements.txt

# The app, listed rather than `COPY . .`: that keeps .env, .venv, .git, var/
# and the tests out of the image. A new top-level app needs a line here.
COPY --chown=watchpost:watchpost manage.py ./
COPY --chown=watchpost:watchpost monitorsite ./monitorsite
COPY --chown=watchpost:watchpost checks ./checks
COPY --chown=watchpost:watchpost alerts ./alerts
COPY --chown=watchpost:watchpost incidents ./incidents

# var/ is WATCHPOST_DATA_DIR; staticfiles/ is where `prepare` may collect again.
RUN mkdir -p /app/var /app/staticfiles \
    && chown watchpost:watchpost /app/var /app/staticfiles

USER watchpost

# Static files are baked into the image (whitenoise serves them). The settings
# need a SECRET_KEY to load; this one exists only for this command and is not
# kept in the image. The dummy URLs stop the settings from creating the
# embedded SQLite/filesystem-broker files; nothing is connected to.
RUN SECRET_KEY=collectstatic-at-build-time-only-not-a-real-secret \
    DATABASE_URL=postgres://build@localhost/build \
    CELERY_BROKER_URL=redis://localhost:6379/0 \
    python manage.py collectstatic --noinput --verbosity 0

ENV WATCHPOST_BIND=0.0.0.0:8000
EXPOSE 8000

CMD ["gunicorn", "monitorsite.wsgi", "--config", "monitorsite/gunicorn.conf.py"]
