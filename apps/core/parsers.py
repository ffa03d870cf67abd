"""The REST API's request parsers (DEFAULT_PARSER_CLASSES).

A module of its own: DRF's ``APIView`` reads the setting when ``rest_framework.views``
is imported, so the parser must not live beside code that imports that module.
"""

from __future__ import annotations

from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from .validation import MAX_JSON_DEPTH, json_problems


class BodyProblems(ParseError):
    """A JSON body with values no edge may store; ``problems`` name each by path."""

    def __init__(self, problems: list[tuple[str, str]]):
        super().__init__(
            "JSON parse error - "
            + "; ".join(f"{path}: {message}" for path, message in problems)
        )
        self.problems = problems


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser (NaN and Infinity already refused), which also refuses
    nesting deeper than ``MAX_JSON_DEPTH``, NUL, lone surrogates and numbers beyond
    64 bits anywhere in the body, each by its JSON path: 400, never a
    RecursionError or a DataError in the view."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            nested = f"is nested more than {MAX_JSON_DEPTH} levels deep"
            raise BodyProblems([("$", nested + "; flatten the document")]) from None
        problems = json_problems(data)
        if problems:
            raise BodyProblems(problems)
        return data
