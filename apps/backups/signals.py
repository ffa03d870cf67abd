"""Signals other apps subscribe to, so that backups need not import them.

``rehearsal_checks`` is sent by a rehearsal (``restore --dry-run``, ``restore
--verify``, the ``verify-backup`` job) once a backup has been restored into a scratch
database, with ``database``: the alias of that copy. While the receivers run, the
default connection of their thread *is* the copy, so the ORM reads the restored data.
Each receiver returns a list of problems (empty: none); ops runs ``check_integrity``.
"""

from django.dispatch import Signal

rehearsal_checks = Signal()
