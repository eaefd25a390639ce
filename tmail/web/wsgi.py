"""For gunicorn: `gunicorn tmail.web.wsgi:app`. The configuration comes from
TMAIL_CONFIG (else /etc/tmail/tmail.toml), as for every tmail command."""
from __future__ import annotations

from .. import config
from . import create_app

app = create_app(config.load())
