"""Index generations: which document table serves searches for each model.

Each indexed model (worlds, rooms, attendees) has its documents in a table of its
own generation (``search_gen_rooms_2027_02_20_20_02``). Exactly one generation per
model is ``active``; searches read only that one. A reindex builds a new generation
beside it and switches in one transaction (see ``apps.search.services``).
"""

from __future__ import annotations

from django.db import models


class Generation(models.Model):
    class State(models.TextChoices):
        BUILDING = "building"
        ACTIVE = "active"

    model = models.CharField(max_length=20)
    # "rooms-2027-02-20-20-02": what operators see; table is derived from it.
    name = models.CharField(max_length=100, unique=True)
    table = models.CharField(max_length=100, unique=True)
    state = models.CharField(max_length=10, choices=State.choices)
    documents = models.BigIntegerField(default=0)
    started_at = models.DateTimeField()
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["model", "-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["model"],
                condition=models.Q(state="active"),
                name="search_generation_one_active_per_model",
            )
        ]

    def __str__(self) -> str:
        return self.name
