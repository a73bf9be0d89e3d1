"""gunicorn settings, the same for `make run` and docker-compose.yml."""

from __future__ import annotations

import logging
import os
import traceback
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

    def access(self, resp: Any, req: Any, environ: dict, request_time: timedelta) -> None:
        """The same line, written as the access log's stream handler writes it.

        Going through `logging` (a LogRecord, level and filter checks, the
        formatter) cost a twentieth of a heartbeat ping's CPU; for gunicorn's
        own handler on stdout or a file, with the plain "%(message)s" format,
        writing the line is all it does. Any other logging setup goes through
        gunicorn's access() as usual.
        """
        handler = self.plain_access_handler()
        if handler is None:
            super().access(resp, req, environ, request_time)
            return
        try:
            atoms = self.atoms_wrapper_class(self.atoms(resp, req, environ, request_time))
            line = self.cfg.access_log_format % atoms
            with handler.lock:  # what StreamHandler.emit does with the formatted record
                handler.stream.write(line + handler.terminator)
                handler.stream.flush()
        except Exception:
            self.error(traceback.format_exc())

    def plain_access_handler(self) -> logging.StreamHandler | None:
        log = self.access_log
        if not self.access_log_enabled or log.filters or log.propagate:
            return None
        if len(log.handlers) != 1 or not log.isEnabledFor(logging.INFO):
            return None
        handler = log.handlers[0]
        formatter = handler.formatter
        plain = formatter is not None and formatter._fmt == self.access_fmt == "%(message)s"
        if not (plain and isinstance(handler, logging.StreamHandler)) or handler.filters:
            return None
        if not getattr(handler, "_gunicorn", False) or handler.stream is None:
            return None
        return handler if handler.level <= logging.INFO else None

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
