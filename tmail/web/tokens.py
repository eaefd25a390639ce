"""The API page: the user's API tokens (made after the password is typed
again, shown once, revoked at once) and their API defaults."""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("tokens", __name__)
