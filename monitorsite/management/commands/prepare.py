"""Get a Watchpost installation ready to start: check, migrate, collect static, seed."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import OperationalError, connection

from monitorsite.broker import queue_depths
from monitorsite.env import redact_url

ADMIN_USERNAME = "admin"


class Command(BaseCommand):
    help = "Check the database and broker, migrate, collect static files and create the demo admin."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--no-demo", action="store_true", help="skip the demo admin and monitors"
        )

    def handle(self, *args: Any, no_demo: bool = False, **options: Any) -> None:
        self.check_database()
        self.check_broker()
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        self.stdout.write("Database migrated, static files collected.")
        if not no_demo:
            self.ensure_admin()
            self.seed_demo()

    def check_database(self) -> None:
        try:
            connection.ensure_connection()
        except OperationalError as exc:
            first_line = (
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            )
            raise CommandError(
                f"Cannot reach the database at {redact_url(settings.DATABASE_URL)}: {first_line}\n"
                "Start the database server, or fix DATABASE_URL (unset it to use the "
                "embedded SQLite database)."
            ) from exc

    def check_broker(self) -> None:
        try:
            queue_depths(timeout=5)
        except Exception as exc:
            raise CommandError(
                f"Cannot reach the Celery broker at {redact_url(settings.CELERY_BROKER_URL)}: "
                f"{type(exc).__name__}: {exc}\n"
                "Start Redis, or fix CELERY_BROKER_URL (unset it to use the embedded "
                "filesystem broker)."
            ) from exc

    def ensure_admin(self) -> None:
        users = get_user_model()
        password_file = settings.DATA_DIR / "admin_password"
        password = settings.WATCHPOST_ADMIN_PASSWORD
        user = users.objects.filter(username=ADMIN_USERNAME).first()
        if user is None:
            password = password or secrets.token_urlsafe(12)
            users.objects.create_superuser(ADMIN_USERNAME, "admin@localhost", password)
        elif password:
            user.set_password(password)
            user.save(update_fields=["password"])
        if password and not settings.WATCHPOST_ADMIN_PASSWORD:
            password_file.write_text(password)
            password_file.chmod(0o600)
        shown = password or (password_file.read_text() if password_file.exists() else "(unchanged)")
        self.stdout.write(
            self.style.SUCCESS(
                f"Admin login: {settings.SITE_URL}/admin/  user {ADMIN_USERNAME}  password {shown}"
            )
        )

    def seed_demo(self) -> None:
        """A few monitors of Watchpost itself, so a fresh install has something to show."""
        from django.core.exceptions import ValidationError

        from checks.models import Monitor

        if Monitor.objects.exists():
            return
        port = os.environ.get("WATCHPOST_BIND", "127.0.0.1:8000").rpartition(":")[2]
        base = f"http://127.0.0.1:{port or 8000}"
        created = []
        for fields in demo_monitors(base, port or "8000"):
            monitor = Monitor(**fields)
            try:
                monitor.full_clean()
            except ValidationError as exc:
                self.stdout.write(f"Demo monitor {monitor.name!r} skipped: {exc.messages[0]}")
                continue
            monitor.save()
            created.append(monitor.name)
        self.stdout.write(f"Demo monitors: {', '.join(created)}.")
        self.seed_demo_paging()
        self.seed_demo_status_page()

    def seed_demo_paging(self) -> None:
        """Page the demo admin by email (printed to the log without EMAIL_HOST) when a demo
        monitor goes down, so a fresh install shows the whole path."""
        from alerts.models import Contact, ContactRule, EscalationPolicy, EscalationStep

        if EscalationPolicy.objects.exists():
            return
        admin = Contact.objects.create(
            name="Admin (demo)",
            email="admin@localhost",
            user=get_user_model().objects.filter(username=ADMIN_USERNAME).first(),
        )
        ContactRule.objects.create(contact=admin, method=ContactRule.Method.EMAIL)
        for severity in ("critical", "high"):
            policy = EscalationPolicy.objects.create(
                name=f"Page the admin ({severity})", default_for=severity, reminder_minutes=30
            )
            EscalationStep.objects.create(policy=policy).contacts.add(admin)
        self.stdout.write(
            "Demo paging: incidents of high and critical monitors email admin@localhost."
        )

    def seed_demo_status_page(self) -> None:
        from checks.models import Monitor
        from incidents.models import Component, StatusPage

        if StatusPage.objects.exists():
            return
        host = settings.STATUS_PAGE_HOST or "status.localhost"
        page = StatusPage.objects.create(
            title="Watchpost status", host=host, description="The demo status page of this install."
        )
        web = Component.objects.create(page=page, name="Web", position=0, show_response_time=True)
        web.monitors.set(Monitor.objects.filter(name__in=["Watchpost web", "Watchpost web port"]))
        ready = Component.objects.create(page=page, name="Monitoring", position=1)
        ready.monitors.set(Monitor.objects.filter(name="Watchpost readiness"))
        port = os.environ.get("WATCHPOST_BIND", "127.0.0.1:8000").rpartition(":")[2] or "8000"
        self.stdout.write(f"Demo status page: http://{host}:{port}/")


def demo_monitors(base: str, port: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "Watchpost web",
            "kind": "http",
            "target": f"{base}/health/live",
            "interval": 10,
            "timeout": 5,
            "description": "The web process answers its liveness endpoint.",
        },
        {
            "name": "Watchpost readiness",
            "kind": "http",
            "target": f"{base}/health/ready",
            "interval": 30,
            "timeout": 10,
            "options": {
                "json": [{"path": "$.status", "value": "ok"}],
                "latency_warning_ms": 500,
                "latency_critical_ms": 2000,
            },
            "description": "Database, broker, beat and workers, as /health/ready reports them.",
        },
        {
            "name": "Watchpost web port",
            "kind": "tcp",
            "target": f"127.0.0.1:{port}",
            "interval": 30,
            "timeout": 5,
        },
    ]
