from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.core.output import (
    Progress,
    counted,
    human_duration,
    write_json,
    write_table,
)
from apps.core.subcommands import add_subcommands
from apps.search import services
from apps.search.serializers import HitSerializer


class Command(BaseCommand):
    help = (
        "Build, update and query the full-text search index of worlds, rooms and "
        "attendees."
    )

    def add_arguments(self, parser) -> None:
        sub = add_subcommands(parser)

        index = sub.add_parser(
            "index",
            help="index all models or the named ones",
            description=(
                "Without --reindex, update the live index in place. With --reindex, "
                "build a new generation and switch to it without interrupting searches."
            ),
        )
        index.add_argument(
            "models",
            nargs="*",
            metavar="MODEL",
            help=f"{', '.join(services.model_names())} (default: all)",
        )
        index.add_argument(
            "--reindex",
            action="store_true",
            help="build a complete new index generation, then switch to it",
        )
        index.add_argument(
            "-f",
            "--from",
            dest="since",
            metavar="TIMESTAMP",
            help="index only rows modified at or after TIMESTAMP (ISO 8601)",
        )
        index.add_argument("--json", action="store_true", help="print JSON for scripts")

        query = sub.add_parser("query", help="search the index, best matches first")
        query.add_argument("text", metavar="TEXT")
        query.add_argument(
            "--model",
            action="append",
            dest="models",
            metavar="MODEL",
            help="only this model (repeatable)",
        )
        query.add_argument("--world", help="only this world (its ID)")
        query.add_argument("--limit", type=int, default=20)
        query.add_argument("--json", action="store_true", help="print JSON for scripts")

        status = sub.add_parser("status", help="list the index generations")
        status.add_argument(
            "--json", action="store_true", help="print JSON for scripts"
        )

    def handle(self, *, action: str, **options) -> None:
        try:
            getattr(self, f"handle_{action}")(**options)
        except services.SearchUnavailable as exc:
            raise CommandError(str(exc)) from None
        except services.UnknownModel as exc:
            raise CommandError(str(exc)) from None

    def handle_index(
        self,
        *,
        models: list[str],
        reindex: bool,
        since: str | None,
        json: bool,
        **options,
    ) -> None:
        if reindex and since:
            raise CommandError(
                "--reindex always indexes every row; use either --reindex or -f."
            )
        try:
            since_at = services.parse_timestamp(since) if since else None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        total = services.rows_to_index(models, reindex=reindex, since=since_at)
        # JSON alone on stdout: the summary line would break a script's parser.
        with Progress(self.stdout, total, "Indexing", "row", summary=not json) as bar:
            results = services.index(
                models, reindex=reindex, since=since_at, progress=bar.advance
            )
        catch_up = services.catch_up_command(results)
        if json:
            write_json(
                self.stdout,
                {
                    "results": [
                        {
                            "model": r.model,
                            "mode": r.mode,
                            "generation": r.generation,
                            "documents": r.documents,
                            "seconds": round(r.seconds, 3),
                            "replaced": r.replaced,
                            "changed": r.changed,
                        }
                        for r in results
                    ],
                    "documents": sum(r.documents for r in results),
                    "catch_up": catch_up,
                },
            )
            return
        write_table(
            self.stdout,
            ["Model", "Mode", "Generation", "Documents", "Took", "Replaced"],
            [
                (
                    r.model,
                    r.mode,
                    r.generation,
                    r.documents,
                    human_duration(r.seconds),
                    r.replaced or "",
                )
                for r in results
            ],
        )
        if catch_up:
            counts = ", ".join(
                counted(r.changed, services.singular(r.model), r.model)
                for r in results
                if r.changed
            )
            self.stdout.write(
                f"{counts} changed while the new generation was built and may be "
                f"missing from it. Catch up with:\n  {catch_up}"
            )
        total = sum(r.documents for r in results)
        self.stdout.write(
            self.style.SUCCESS(
                f"Indexed {counted(total, 'document')} in "
                f"{counted(len(results), 'model')}."
            )
        )

    def handle_query(
        self,
        *,
        text: str,
        models: list[str] | None,
        world: str | None,
        limit: int,
        json: bool,
        **options,
    ) -> None:
        try:
            hits = services.query(text, models=models, world=world, limit=limit)
        except ValueError as exc:
            raise CommandError(f"{exc} Example: search query 'main stage'") from None
        except services.IndexNotBuilt as exc:
            raise CommandError(str(exc)) from None
        if json:
            write_json(self.stdout, HitSerializer(hits, many=True).data)
            return
        if hits:
            write_table(
                self.stdout,
                ["Model", "ID", "World", "Title", "Match"],
                [
                    (h.model, h.id, h.world, h.title, " ".join(h.snippet.split()))
                    for h in hits
                ],
            )
        self.stdout.write(
            self.style.SUCCESS(f"{counted(len(hits), 'result')} for {text!r}.")
        )

    def handle_status(self, *, json: bool, **options) -> None:
        rows = services.generations()
        if json:
            write_json(self.stdout, rows)
            return
        write_table(
            self.stdout,
            ["Model", "Generation", "State", "Documents", "Activated"],
            [
                (
                    r["model"],
                    r["generation"],
                    r["state"],
                    r["documents"],
                    r["activated_at"]
                    and r["activated_at"].isoformat(timespec="seconds"),
                )
                for r in rows
            ],
        )
        if not rows:
            self.stdout.write(
                "No index yet; build it with: python manage.py search index"
            )
