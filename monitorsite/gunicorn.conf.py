"""gunicorn settings, the same for `make run` and docker-compose.yml."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from gunicorn.glogging import Logger

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


class AccessLogger(Logger):
    """gunicorn's logger, building the access line from only the fields it shows.

    gunicorn's own atoms() copies every request header, response header and
    WSGI variable into a dict for each request, to offer them to any format;
    for heartbeat pings that was a tenth of the web workers' CPU. Another
    format (`--access-logformat`) gets gunicorn's full set.
    """

    def atoms(self, resp: Any, req: Any, environ: dict, request_time: timedelta) -> dict:
        if self.cfg.access_log_format != access_log_format:
            return super().atoms(resp, req, environ, request_time)
        status = resp.status
        return {
            "h": environ.get("REMOTE_ADDR", "-"),
            "r": f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} {environ['SERVER_PROTOCOL']}",
            "s": status.split(None, 1)[0] if isinstance(status, str) else status,
            "b": str(resp.sent) if getattr(resp, "sent", None) is not None else "-",
            "M": request_time // timedelta(milliseconds=1),
        }


logger_class = AccessLogger
