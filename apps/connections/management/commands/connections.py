"""connections list|drop|force_reload: see and move live WebSocket connections."""

from __future__ import annotations

import argparse
import re

from django.core.management.base import BaseCommand, CommandError

from apps.connections import services
from apps.connections.protocol import Move
from apps.connections.serializers import LabelSerializer, SendResultSerializer
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


SPREAD = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m)?")
SPREAD_UNITS = {"ms": 1, "s": 1000, "m": 60_000, None: 1000}


def spread(value: str) -> int:
    """``30s``, ``500ms``, ``2m`` or seconds (``30``) as milliseconds."""
    match = SPREAD.fullmatch(value.strip())
    if not match:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a duration such as 30s, 500ms or 2m"
        )
    ms = round(float(match[1]) * SPREAD_UNITS[match[2]])
    if ms > services.MAX_SPREAD_MS:
        raise argparse.ArgumentTypeError("must be at most an hour (60m)")
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
        for move, text in (
            (Move.DROP, "close every matching connection"),
            (Move.RELOAD, "tell every matching client to reload, then close it"),
        ):
            action = sub.add_parser(move.command, help=text)
            action.add_argument(
                "labels",
                nargs="*",
                metavar="LABEL_GLOB",
                help="fnmatch patterns of labels such as 'abc123.*' (default: '*')",
            )
            action.add_argument(
                "--interval-ms",
                "--interval",  # the old spelling, kept for scripts
                dest="interval_ms",
                type=interval,
                default=0,
                metavar="MS",
                help="one connection every MS milliseconds instead of all at once",
            )
            action.add_argument(
                "--spread",
                type=spread,
                default=None,
                metavar="DURATION",
                help="tell the clients to come back at random within this window "
                "(30s, 500ms, 2m; 0 for at once); default: the count divided by "
                "CONNECTIONS_RECONNECT_RATE per second",
            )
            action.add_argument(
                "--dry-run",
                action="store_true",
                help="print what would be reached without sending anything",
            )
            action.add_argument(
                "--json",
                action="store_true",
                help="print the result as JSON: count, labels, unreachable, dry_run",
            )

    def handle(self, *, action: str, **options) -> None:
        try:
            if action == "list":
                self.show_list(as_json=options["json"])
            else:
                self.send(
                    Move.of(action),
                    options["labels"],
                    interval_ms=options["interval_ms"],
                    spread_ms=options["spread"],
                    dry_run=options["dry_run"],
                    as_json=options["json"],
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
        self,
        move: Move,
        patterns: list[str],
        *,
        interval_ms: int,
        spread_ms: int | None,
        dry_run: bool,
        as_json: bool,
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
            if as_json:
                result = services.SendResult(
                    selection.count, selection.labels, move=move
                )
                write_json(
                    self.stdout,
                    SendResultSerializer(result.as_dict(dry_run=True)).data,
                )
                return
            for label in selection.labels:
                self.stdout.write(f"{label}: {len(selection.channels[label])}")
            self.stdout.write(
                self.style.SUCCESS(
                    f"Would {move.word} {counted(selection.count, 'connection')} "
                    f"(labels: {selection.describe_labels()})"
                )
            )
            return
        # With --json, stdout is for the script: a bar goes to a terminal's stderr.
        bar_stream = self.stderr if as_json else self.stdout
        with Progress(bar_stream, selection.count, move.doing) as bar:
            result = services.move(
                move,
                selection,
                interval_ms=interval_ms,
                spread_ms=spread_ms,
                advance=bar.advance,
            )
        if result.unreachable:
            self.stderr.write(result.unreachable_note())
        if as_json:
            write_json(self.stdout, SendResultSerializer(result.as_dict()).data)
        else:
            self.stdout.write(self.style.SUCCESS(result.summary()))
