from datetime import datetime, time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from apps.accounts import services
from apps.accounts.serializers import TermsSerializer
from apps.core.output import write_json


def parse_when(value: str) -> datetime:
    """Parse an ISO date or date-time; without a zone it is in the server's time zone."""
    try:
        moment = parse_datetime(value)
        if moment is None:
            day = parse_date(value)
            moment = datetime.combine(day, time.min) if day else None
    except ValueError:
        moment = None
    if moment is None:
        raise CommandError(
            f"--active-from {value!r} is not a date or date-time; "
            "use e.g. 2026-12-01 or 2026-12-01T09:00+01:00."
        )
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


class Command(BaseCommand):
    help = (
        "Import a version of terms and conditions from a Markdown file. From its active "
        "date on, attendees who have not accepted it are asked to when they connect."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug", help="which terms, e.g. tos or privacy")
        parser.add_argument("version", help="the version of this text, e.g. 2")
        parser.add_argument("file", help="the Markdown file")
        parser.add_argument(
            "--active-from",
            help="when it takes effect (ISO date or date-time; default now)",
        )
        parser.add_argument(
            "--name", help="the title shown (default: the file's first heading)"
        )
        parser.add_argument(
            "--optional",
            action="store_true",
            help="attendees are not required to accept it",
        )
        parser.add_argument(
            "--json", action="store_true", help="print the imported terms as JSON"
        )

    def handle(
        self,
        *,
        slug: str,
        version: str,
        file: str,
        active_from: str | None,
        name: str | None,
        optional: bool,
        json: bool,
        **options,
    ) -> None:
        path = Path(file)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise CommandError(f"{file}: no such file.") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"{file} cannot be read as UTF-8 text: {exc}") from exc
        when = parse_when(active_from) if active_from else None
        try:
            terms = services.import_terms(
                slug,
                version,
                text,
                name=name,
                active_from=when,
                required=not optional,
            )
        except services.AccountError as exc:
            raise CommandError(str(exc)) from exc
        if json:
            write_json(self.stdout, TermsSerializer(terms).data)
            return
        local = timezone.localtime(terms.active_from)
        self.stdout.write(
            self.style.SUCCESS(
                f'Imported "{terms.name}" ({terms.slug} version {terms.version}), '
                f"active from {local:%Y-%m-%d %H:%M %Z}."
            )
        )
