"""The filter of Django's error page and error reports (DEFAULT_EXCEPTION_REPORTER_FILTER).

Apart from :mod:`apps.core.secrets`, which the settings import: Django's debug views
(``django.views.debug``, with ``django.http``) cost ~100 ms of every command's
start-up, and they are needed only when an error is reported.
"""

from __future__ import annotations

from typing import Any

from django.views.debug import SafeExceptionReporterFilter

from .secrets import mask_setting


class ExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's error page and error reports, with every setting masked as
    :func:`mask_setting` does (Django hides only names such as ``*_KEY``, not a
    password inside ``CACHES``' ``LOCATION``)."""

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        value = super().cleanse_setting(key, value)
        if isinstance(value, str):
            return mask_setting(str(key), value)
        return value
