"""What each indexed model contributes to the index, as SQL on each database.

A source is a SELECT returning one row per searchable object with the columns
``id, world_id, title, a, b, c``: ``title`` is what results show, and ``a``/``b``/``c``
are the indexed texts by weight (A ranks highest). The whole index is built with a
single ``INSERT … SELECT`` from these, so a million documents never pass through
Python; single-object updates run the same SELECT with ``WHERE id IN (…)``, so a
reindexed document and an updated one can never differ.

Soft-deleted rows are left out here. Rows of a soft-deleted world are left out when
searching (by joining the world), so deleting a world needs no reindex.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.apps import apps
from django.db import models


@dataclass(frozen=True)
class Source:
    key: str  # "rooms": the plural used in generation names and by commands
    singular: str
    app_label: str
    model_name: str
    alias: str  # the source table's alias in the SQL below
    postgresql: str
    sqlite: str

    @property
    def model(self) -> type[models.Model]:
        return apps.get_model(self.app_label, self.model_name)

    def sql(self, vendor: str, where: str = "") -> str:
        """Return the SELECT for ``vendor``, restricted by ``where`` (on the alias)."""
        template = self.postgresql if vendor == "postgresql" else self.sqlite
        World = apps.get_model("worlds", "World")
        return template.format(
            table=self.model._meta.db_table,
            worlds=World._meta.db_table,
            where=f"AND ({where})" if where else "",
        )


WORLDS = Source(
    key="worlds",
    singular="world",
    app_label="worlds",
    model_name="World",
    alias="w",
    postgresql="""
        SELECT w.id AS id, w.id AS world_id, w.title AS title, w.title AS a,
               coalesce(w.domain, '') AS b, '' AS c
        FROM {table} w
        WHERE w.deleted_at IS NULL {where}
    """,
    sqlite="""
        SELECT w.id AS id, w.id AS world_id, w.title AS title, w.title AS a,
               coalesce(w.domain, '') AS b, '' AS c
        FROM {table} w
        WHERE w.deleted_at IS NULL {where}
    """,
)

# Markdown pages are modules {"type": "page.markdown", "config": {"content": …}}.
ROOMS = Source(
    key="rooms",
    singular="room",
    app_label="worlds",
    model_name="Room",
    alias="r",
    postgresql="""
        SELECT r.id AS id, r.world_id AS world_id, r.name AS title, r.name AS a,
               r.description AS b,
               -- Containment first: most rooms have no page, and @> is far cheaper
               -- than unnesting their modules (and false for a non-array).
               CASE WHEN r.modules @> '[{{"type": "page.markdown"}}]' THEN coalesce((
                   SELECT string_agg(m -> 'config' ->> 'content', E'\\n')
                   FROM jsonb_array_elements(r.modules) m
                   WHERE m ->> 'type' = 'page.markdown'
               ), '') ELSE '' END AS c
        FROM {table} r
        WHERE r.deleted_at IS NULL {where}
    """,
    sqlite="""
        SELECT r.id AS id, r.world_id AS world_id, r.name AS title, r.name AS a,
               r.description AS b,
               coalesce((
                   SELECT group_concat(json_extract(m.value, '$.config.content'),
                                       char(10))
                   FROM json_each(r.modules) m
                   WHERE json_type(r.modules) = 'array'
                     AND json_extract(m.value, '$.type') = 'page.markdown'
               ), '') AS c
        FROM {table} r
        WHERE r.deleted_at IS NULL {where}
    """,
)

# Attendees are users with a world. Their profile values count only for the fields
# their world's config marks {"searchable": true}.
ATTENDEES = Source(
    key="attendees",
    singular="attendee",
    app_label="accounts",
    model_name="User",
    alias="u",
    postgresql="""
        SELECT u.id AS id, u.world_id AS world_id,
               coalesce(nullif(u.display_name, ''), u.username) AS title,
               u.display_name AS a,
               coalesce((
                   SELECT string_agg(u.profile -> (f ->> 'id') #>> '{{}}', E'\\n')
                   FROM jsonb_array_elements(CASE jsonb_typeof(w.config -> 'profile_fields')
                        WHEN 'array' THEN w.config -> 'profile_fields'
                        ELSE '[]'::jsonb END) f
                   WHERE f ->> 'searchable' = 'true'
                     AND jsonb_typeof(u.profile) = 'object'
               ), '') AS b,
               '' AS c
        FROM {table} u JOIN {worlds} w ON w.id = u.world_id
        WHERE u.deleted_at IS NULL {where}
    """,
    sqlite="""
        SELECT u.id AS id, u.world_id AS world_id,
               coalesce(nullif(u.display_name, ''), u.username) AS title,
               u.display_name AS a,
               coalesce((
                   SELECT group_concat(p.value, char(10))
                   FROM json_each(w.config, '$.profile_fields') f
                   JOIN json_each(u.profile) p
                     ON p.key = json_extract(f.value, '$.id')
                   WHERE json_extract(f.value, '$.searchable') = 1
                     AND json_type(u.profile) = 'object'
               ), '') AS b,
               '' AS c
        FROM {table} u JOIN {worlds} w ON w.id = u.world_id
        WHERE u.deleted_at IS NULL {where}
    """,
)

SOURCES: dict[str, Source] = {s.key: s for s in (WORLDS, ROOMS, ATTENDEES)}


def resolve(names: list[str] | None) -> list[Source]:
    """Return the sources named (singular or plural, any case), all when none.

    Always in the order of ``SOURCES``: searches lock the live views and a reindex's
    switch replaces them in this one order, so neither can deadlock the other.
    Raise ``KeyError`` with the first unknown name.
    """
    if not names:
        return list(SOURCES.values())
    found: list[Source] = []
    for name in names:
        wanted = name.strip().lower()
        source = next(
            (s for s in SOURCES.values() if wanted in (s.key, s.singular)), None
        )
        if source is None:
            raise KeyError(name)
        if source not in found:
            found.append(source)
    return [s for s in SOURCES.values() if s in found]
