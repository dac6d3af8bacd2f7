"""Keep secrets out of what we store, log and show (R9).

A database URL may carry a password (``postgresql://desk:s3cret@host/db``); a webhook URL
is itself the secret. What we keep of them is a form that still says where things went
but cannot be used to get in.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s]*)(?::[^@/\s]*)?@")


def redact_url(url: str | None) -> str | None:
    """``url`` without its password and query string (where tokens live); the scheme, user,
    host, port and path stay. Not a URL: returned as is (a plain file path holds no secret)."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", url)
    if not parts.scheme or not parts.netloc:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{host}" if ":" in userinfo else f"{user}@{host}"
    query = REDACTED if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact_text(text: str, secrets: list[str | None]) -> str:
    """``text`` with every non-empty secret in ``secrets`` replaced (for error messages from
    libraries that echo what they were given)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text
