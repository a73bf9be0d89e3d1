#!/usr/bin/env python
"""Watchpost's command line: `python manage.py help` lists the commands."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monitorsite.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A bad environment variable: one readable line, not a traceback.
        sys.stderr.write(f"Watchpost configuration error: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
