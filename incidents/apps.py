from __future__ import annotations

from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    name = "incidents"
    verbose_name = "Incidents and status pages"

    def ready(self) -> None:
        from incidents import signals  # noqa: F401  (connects the listeners)
        from incidents.statuspage import autopublish  # noqa: F401  (auto-publish listeners)
        from incidents.statuspage import signals as status_signals  # noqa: F401
