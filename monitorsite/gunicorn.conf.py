"""gunicorn settings, the same for `make run` and docker-compose.yml."""

from __future__ import annotations

import os

bind = os.environ.get("WATCHPOST_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 30
graceful_timeout = 10
accesslog = "-"
errorlog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# gunicorn's control socket lives in one fixed path per user, so two Watchpost
# instances on one host would collide on it; nothing here uses it.
control_socket_disable = True
