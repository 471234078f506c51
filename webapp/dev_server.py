"""The development server's own request lines, dropped: the console logs each request itself.

``flask --app webapp run`` (what ``make run`` starts) serves through Werkzeug's development
server, which logs every request as ``127.0.0.1 - - [date] "GET / HTTP/1.1" 200 -`` on the
``werkzeug`` logger, next to the console's structured access line (``webapp.views.ops``):
each request appeared twice, and Werkzeug's line carries the raw query string. Its other
lines (the address it listens on, errors) stay.
"""

from __future__ import annotations

import logging

# werkzeug.serving.WSGIRequestHandler.log_request: self.log("info", '"%s" %s %s', ...); log()
# prefixes the client address and date, and werkzeug._internal._log strips the newline.
_REQUEST_LINE_END = '] "%s" %s %s'


class DropRequestLines(logging.Filter):
    """Drops Werkzeug's per-request access lines; passes everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno == logging.INFO
            and isinstance(record.msg, str)
            and record.msg.rstrip().endswith(_REQUEST_LINE_END)
        )


def log_requests_once() -> None:
    """Install :class:`DropRequestLines` on the ``werkzeug`` logger (idempotent)."""
    werkzeug_logger = logging.getLogger("werkzeug")
    if not any(isinstance(f, DropRequestLines) for f in werkzeug_logger.filters):
        werkzeug_logger.addFilter(DropRequestLines())
