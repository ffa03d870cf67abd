"""Tags of the operations page: humanized times and status badges."""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince, timeuntil

register = template.Library()

# Closer to now than this reads "just now" (or "due now", for a next run).
NOW_SECONDS = 45

BADGES = {
    "ok": "ops-ok",
    "success": "ops-ok",
    "complete": "ops-ok",
    "failure": "ops-unavailable",
    "lost": "ops-unavailable",
    "unavailable": "ops-unavailable",
    "running": "ops-busy",
    "queued": "ops-busy",
}


def humanized(moment: dt.datetime, now: dt.datetime) -> str:
    """Return ``moment`` relative to ``now``: "just now", "3 minutes ago", "in 5 hours"."""
    seconds = (moment - now).total_seconds()
    if abs(seconds) < NOW_SECONDS:
        return "due now" if seconds >= 0 else "just now"
    if seconds > 0:
        return f"in {timeuntil(moment, now, depth=1)}"
    return f"{timesince(moment, now, depth=1)} ago"


@register.simple_tag(takes_context=True)
def when(context: template.Context, moment: dt.datetime | None) -> SafeString | str:
    """A ``<time>`` that reads "3 minutes ago" and shows the exact time on hover."""
    if moment is None:
        return "-"
    now = context.get("now") or timezone.now()
    exact = timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        moment.isoformat(),
        exact,
        humanized(moment, now),
    )


@register.simple_tag
def badge(status: str, text: str | None = None) -> SafeString:
    """A status as a badge whose colours read in the light and the dark scheme."""
    return format_html(
        '<span class="ops-badge {}">{}</span>',
        BADGES.get(status, "ops-idle"),
        status if text is None else text,
    )
