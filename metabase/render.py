"""Render a question's native SQL the way Metabase substitutes plain variables.

Metabase runs a native question by removing every optional ``[[ ... ]]`` clause whose
variables have no value, keeping the others without their brackets, and putting each value in
place of its ``{{tag}}``: text as a quoted string literal, a date as a date value, a number as
a number. This module does the same, so the questions can be run against the real marts in
tests (and by hand) without a Metabase.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from metabase.content import OPTIONAL_RE, TAG_RE, Question


class RenderError(ValueError):
    """A value does not fit its template tag, or a required tag has no value."""


def _literal(tag_type: str, value: Any) -> str:
    if tag_type == "text":
        return "'" + str(value).replace("'", "''") + "'"
    if tag_type == "date":
        day = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
        return f"date '{day.isoformat()}'"
    if tag_type == "number":
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    raise RenderError(f"unknown template tag type '{tag_type}'")


def render_sql(question: Question, values: Mapping[str, Any] | None = None) -> str:
    """The SQL Metabase would run for a question and a set of filter values.

    Args:
        question: the question.
        values: template tag name -> value; a missing or ``None`` value leaves the filter off.

    Returns:
        Plain SQL without ``[[ ]]`` or ``{{ }}``.

    Raises:
        RenderError: when a value does not fit its tag's type, a value names an unknown tag,
            or a tag outside an optional clause has no value.
    """
    given = {name: value for name, value in (values or {}).items() if value not in (None, "")}
    types = {tag.name: tag.type for tag in question.template_tags}
    unknown = set(given) - set(types)
    if unknown:
        raise RenderError(f"question '{question.key}' has no template tags {sorted(unknown)}")

    def optional(match: re.Match[str]) -> str:
        clause = match.group(1)
        names = TAG_RE.findall(clause)
        return clause if all(name in given for name in names) else ""

    sql = OPTIONAL_RE.sub(optional, question.sql)

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in given:
            raise RenderError(f"question '{question.key}': template tag '{name}' has no value")
        try:
            return _literal(types[name], given[name])
        except ValueError as exc:
            raise RenderError(f"question '{question.key}': bad value for '{name}': {exc}") from exc

    return TAG_RE.sub(substitute, sql)
