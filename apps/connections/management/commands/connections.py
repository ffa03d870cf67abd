"""connections list|drop|force_reload: see and move live WebSocket connections."""

from __future__ import annotations

import argparse

from django.core.management.base import BaseCommand, CommandError

from apps.connections import services
from apps.connections.serializers import LabelSerializer
from apps.core.output import Progress, counted, write_json, write_table
from apps.core.subcommands import add_subcommands


def interval(value: str) -> int:
    try:
        ms = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if ms < 0:
        raise argparse.ArgumentTypeError("must be zero or more milliseconds")
    return ms


class Command(BaseCommand):
    help = (
        "List live WebSocket connections per deploy label, drop them, or make their "
        "browsers reload. Needs the Redis channel layer (REDIS_URL)."
    )

    def add_arguments(self, parser) -> None:
        sub = add_subcommands(parser)
        listing = sub.add_parser(
            "list", help="labels and their estimated number of connections"
        )
        listing.add_argument("--json", action="store_true", help="print JSON")
        for name, text in (
            ("drop", "close every matching connection"),
            ("force_reload", "tell every matching client to reload, then close it"),
        ):
            action = sub.add_parser(name, help=text)
            action.add_argument(
                "labels",
                nargs="*",
                metavar="LABEL_GLOB",
                help="fnmatch patterns of labels such as 'abc123.*' (default: '*')",
            )
            action.add_argument(
                "--interval",
                type=interval,
                default=0,
                metavar="MS",
                help="one connection every MS milliseconds instead of all at once",
            )
            action.add_argument(
                "--dry-run",
                action="store_true",
                help="print what would be reached without sending anything",
            )

    def handle(self, *, action: str, **options) -> None:
        try:
            if action == "list":
                self.show_list(as_json=options["json"])
            else:
                self.send(
                    action,
                    options["labels"],
                    interval_ms=options["interval"],
                    dry_run=options["dry_run"],
                )
        except services.LayerUnavailable as exc:
            raise CommandError(str(exc)) from exc

    def show_list(self, *, as_json: bool) -> None:
        labels = services.list_labels()
        if as_json:
            write_json(self.stdout, LabelSerializer(labels, many=True).data)
            return
        write_table(
            self.stdout,
            ["label", "est. number of connections"],
            [(item.label, item.connections) for item in labels],
        )
        total = sum(item.connections for item in labels)
        self.stdout.write(
            self.style.SUCCESS(
                f"{counted(total, 'connection')} in {counted(len(labels), 'label')}"
            )
        )

    def send(
        self, action: str, patterns: list[str], *, interval_ms: int, dry_run: bool
    ) -> None:
        selection = services.select(patterns)
        # Only globs given: with none, every label is meant, and none live is no error.
        unmatched = selection.unmatched if patterns else []
        if unmatched:
            globs = ", ".join(repr(p) for p in unmatched)
            raise CommandError(
                f"The label {'glob' if len(unmatched) == 1 else 'globs'} {globs} "
                f"{'matches' if len(unmatched) == 1 else 'match'} no live connection; "
                "nothing was sent. `manage.py connections list` shows the labels "
                "with live connections."
            )
        if dry_run:
            for label in selection.labels:
                self.stdout.write(f"{label}: {len(selection.channels[label])}")
            would = "drop" if action == "drop" else "reload"
            self.stdout.write(
                self.style.SUCCESS(
                    f"Would {would} {counted(selection.count, 'connection')} "
                    f"(labels: {selection.describe_labels()})"
                )
            )
            return
        service = services.drop if action == "drop" else services.force_reload
        doing = "dropping" if action == "drop" else "reloading"
        with Progress(self.stdout, selection.count, doing) as bar:
            result = service(selection, interval_ms=interval_ms, advance=bar.advance)
        if result.unreachable:
            self.stderr.write(result.unreachable_note())
        self.stdout.write(self.style.SUCCESS(result.summary()))
