from django.core.management.base import BaseCommand, CommandError

from apps.core.output import counted, write_json, write_table
from apps.ops.integrity import check_integrity


class Command(BaseCommand):
    help = (
        "Report broken data without fixing it: rows whose parent is gone, files and "
        "rows that disagree, malformed world secrets, schedules of unknown jobs. "
        "Exits non-zero when something is found."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--json", action="store_true", help="print JSON for scripts"
        )

    def handle(self, *, json: bool, **options) -> None:
        findings = check_integrity()
        found = [f for f in findings if f.count]
        if json:
            write_json(
                self.stdout,
                {"ok": not found, "findings": [f.as_dict() for f in findings]},
            )
        else:
            write_table(
                self.stdout,
                ["Kind", "Count", "What"],
                [(f.kind, f.count, f.description) for f in findings],
            )
            for finding in found:
                self.stdout.write(f"\n{finding.kind} (first {len(finding.examples)}):")
                for example in finding.examples:
                    self.stdout.write(f"  {example}")
        if found:
            total = sum(f.count for f in found)
            raise CommandError(
                f"{counted(total, 'problem')} of {counted(len(found), 'kind')} found; "
                "nothing was "
                "changed. See docs/accounts.md#check_integrity for how to fix each kind.",
                returncode=1,
            )
        if not json:
            self.stdout.write(self.style.SUCCESS("No integrity problems found."))
