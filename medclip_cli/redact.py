"""Credentials never leave the process: ``user:password@`` and secret query values in URLs are masked.

One function, :func:`redact`, is applied wherever text leaves medclip: every line ``ui`` prints
(errors, warnings, JSON) and every record medclip writes about a download.
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://user:password@host or scheme://token@host (anything before the last @ of the authority)
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#@\s]*)@")
# ?token=...&sig=... : query parameters whose names say they carry a secret
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&;](?:[A-Za-z0-9_\-]*?(?:token|key|secret|password|passwd|pwd|signature|sig|auth|credential)"
    r"[A-Za-z0-9_\-]*))=(?P<value>[^&#\s\"']+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``."""
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m['key']}={MASK}", text)


def excerpt(text: str, limit: int = 80) -> str:
    """At most ``limit`` characters of ``text`` (a file's content quoted in a message), marked when cut."""
    text = text.replace("\n", "\\n").replace("\r", "\\r").replace("\0", "\\0")
    return text if len(text) <= limit else text[: limit - 1] + "…"
