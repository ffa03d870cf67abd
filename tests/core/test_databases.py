"""apps.core.databases.database_size: what a backup's progress bar counts towards.

SQLite's (a file) is measured by the backup test on a terminal in test_output.py.
"""

import pytest
from django.db import connection

from apps.core.databases import database_size


@pytest.mark.postgres
@pytest.mark.django_db
def test_postgresql_reports_pg_database_size():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        (expected,) = cursor.fetchone()
    assert database_size() == expected


def test_an_unknown_alias_has_no_size():
    assert database_size("no-such-alias") is None
