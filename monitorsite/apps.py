from __future__ import annotations

from django.apps import AppConfig


class MonitorsiteConfig(AppConfig):
    name = "monitorsite"
    verbose_name = "Watchpost system"

    def ready(self) -> None:
        from monitorsite import logging as watchpost_logging
        from monitorsite import sentry

        sentry.init_from_settings()
        watchpost_logging.connect_celery_signals()
