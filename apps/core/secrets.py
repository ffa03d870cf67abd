"""Secrets are never printed unless asked for: one place that masks them.

Every output that may show a URL or a setting (``info``, ``stats``, ``config``, the
admin, ``/readyz``, logs) passes it through :func:`mask_url` or :func:`mask_setting`.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"

# Query parameters and setting names that hold a secret (redis://host/0?password=…,
# s3 URLs with a signature, DJANGO_SECRET_KEY, AWS_SECRET_ACCESS_KEY, …).
_SECRET_WORD = re.compile(
    r"pass(word|wd)?|secret|token|key|signature|credential|auth|pwd", re.IGNORECASE
)


def is_secret_name(name: str) -> bool:
    """Whether a setting or query parameter called ``name`` holds a secret."""
    return bool(_SECRET_WORD.search(name))


def mask_url(url: str) -> str:
    """Return ``url`` with its password and every secret query parameter masked.

    ``redis://:pw@host/0`` and ``redis://user:pw@host/0?password=pw&db=1`` both come
    back without ``pw``. Text that is not a URL comes back as it is; a URL that cannot
    be parsed comes back masked whole, since it may still hold a secret.
    """
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        password = parts.password
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return MASK
    secret_query = any(is_secret_name(key) for key, _ in query)
    if password is None and not secret_query:
        # Unchanged text: rebuilding would turn sqlite:////var/db into sqlite://var/db.
        return url
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:{MASK}@{hostport}"
    if secret_query:
        masked = [(k, MASK if is_secret_name(k) else v) for k, v in query]
        query_text = urlencode(masked, safe="*")
    else:
        query_text = parts.query
    return urlunsplit(parts._replace(netloc=netloc, query=query_text))


def mask_setting(name: str, value: object) -> object:
    """Return a setting's value fit to print: masked whole if its name says secret."""
    if value in (None, ""):
        return value
    if is_secret_name(name) and not name.endswith(("_FILE", "_ID")):
        return MASK
    if isinstance(value, str):
        return mask_url(value)
    return value
