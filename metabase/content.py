"""Questions, dashboards and alerts described as YAML files, parsed and validated.

The files live under ``metabase/content/`` (or any folder passed to :func:`load_content`):

- ``questions/*.yml``: each holds ``questions:``, a list of native SQL questions over ``marts.*``;
- ``dashboards/*.yml``: each holds one dashboard (its parameters and its cards on the 24-column
  grid, with the mapping of dashboard parameters to each card's template tags);
- ``alerts.yml`` (optional): ``alerts:``, Metabase alerts on questions.

Filters are Metabase *plain variables* (``{{region}}``, types ``text``, ``date`` and
``number``), used inside optional clauses (``[[and sales.region = {{region}}]]``). They need no
field ids from Metabase's synced metadata and render to the same standard SQL on Postgres and
DuckDB; see ``metabase/README.md``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

DEFAULT_CONTENT_DIR = Path(__file__).parent / "content"

GRID_COLUMNS = 24
TAG_TYPES = ("text", "date", "number")
DISPLAYS = ("scalar", "line", "bar", "area", "row", "pie", "table", "combo", "progress")
PARAMETER_TYPES = {
    # dashboard parameter type -> the template tag type it can feed
    "date/single": "date",
    "string/=": "text",
    "category": "text",
    "number/=": "number",
}
SEND_CONDITIONS = ("goal_above", "goal_below", "has_result")
GOAL_DISPLAYS = ("line", "bar", "area")

TAG_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
OPTIONAL_RE = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)
MART_RE = re.compile(r"\bmarts\.([A-Za-z_][A-Za-z0-9_]*)")
KEY_RE = re.compile(r"^[a-z][a-z0-9_]*$")

# Visualization settings whose values name result columns.
_COLUMN_LIST_SETTINGS = ("graph.dimensions", "graph.metrics")
_COLUMN_SETTINGS = ("pie.dimension", "pie.metric", "scalar.field")


class ContentError(ValueError):
    """The content files are malformed or inconsistent."""


@dataclass(frozen=True)
class TemplateTag:
    """A Metabase plain variable used in a question's SQL.

    Attributes:
        name: the name inside ``{{ }}``.
        type: ``text``, ``date`` (``YYYY-MM-DD``) or ``number``.
        display_name: the label Metabase shows.
    """

    name: str
    type: str
    display_name: str


@dataclass(frozen=True)
class Question:
    """A saved native SQL question (a Metabase card)."""

    key: str
    name: str
    description: str
    display: str
    sql: str
    columns: tuple[str, ...]
    template_tags: tuple[TemplateTag, ...]
    visualization_settings: dict[str, Any]
    marts: tuple[str, ...]

    @property
    def tag_names(self) -> set[str]:
        """The names of the question's template tags."""
        return {tag.name for tag in self.template_tags}

    def visualization_columns(self) -> set[str]:
        """The result columns its visualization settings refer to.

        Returns:
            Column names read from ``graph.*``, ``pie.*``, ``scalar.field``, ``table.columns``
            and ``column_settings``; a table shows every result column.
        """
        settings = self.visualization_settings
        used: set[str] = set(self.columns) if self.display == "table" else set()
        for name in _COLUMN_LIST_SETTINGS:
            used.update(settings.get(name) or [])
        for name in _COLUMN_SETTINGS:
            if settings.get(name):
                used.add(settings[name])
        for column in settings.get("table.columns") or []:
            used.add(column["name"])
        for key in settings.get("column_settings") or {}:
            # Metabase keys column settings by '["name","<column>"]'.
            match = re.fullmatch(r'\["name","([^"]+)"\]', key)
            if match:
                used.add(match.group(1))
        return used


@dataclass(frozen=True)
class DashboardParameter:
    """A dashboard filter.

    Attributes:
        key: stable id (used as the Metabase parameter id and slug).
        name: the label.
        type: Metabase parameter type (``date/single``, ``string/=``, ``number/=``).
        values: fixed choices offered in the dropdown (empty: free input).
    """

    key: str
    name: str
    type: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dashcard:
    """A question placed on a dashboard.

    Attributes:
        question: the question's key.
        row, col, size_x, size_y: position and size on Metabase's 24-column grid.
        parameter_mappings: dashboard parameter key -> the card's template tag name. When the
            file gives none, every dashboard parameter is mapped to the card's template tag of
            the same name, if it has one (``auto_mappings``).
    """

    question: str
    row: int
    col: int
    size_x: int
    size_y: int
    parameter_mappings: dict[str, str] = field(default_factory=dict)
    auto_mappings: bool = False


@dataclass(frozen=True)
class Dashboard:
    """A dashboard: parameters and cards."""

    key: str
    name: str
    description: str
    parameters: tuple[DashboardParameter, ...]
    cards: tuple[Dashcard, ...]

    def questions(self) -> list[str]:
        """The keys of the questions on the dashboard, in layout order."""
        return [card.question for card in self.cards]


@dataclass(frozen=True)
class Alert:
    """A Metabase alert (notification) on a question.

    Attributes:
        key: stable id.
        question: the question's key.
        condition: ``goal_above``, ``goal_below`` or ``has_result``.
        schedule: Quartz cron expression for when Metabase checks the question.
        send_once: stop after the first time it fires.
    """

    key: str
    question: str
    condition: str
    schedule: str
    send_once: bool = False


@dataclass(frozen=True)
class Content:
    """Everything under the content folder."""

    questions: dict[str, Question]
    dashboards: dict[str, Dashboard]
    alerts: dict[str, Alert] = field(default_factory=dict)

    def marts_of(self, dashboard_key: str) -> list[str]:
        """The marts a dashboard's questions read, sorted.

        Args:
            dashboard_key: the dashboard's key.

        Returns:
            Mart (model) names, without the ``marts.`` prefix.
        """
        marts: set[str] = set()
        for question_key in self.dashboards[dashboard_key].questions():
            marts.update(self.questions[question_key].marts)
        return sorted(marts)


def sql_template_tags(sql: str) -> set[str]:
    """The names of the ``{{tag}}`` variables in a native query.

    Args:
        sql: the native query text.

    Returns:
        The tag names.
    """
    return set(TAG_RE.findall(sql))


def sql_marts(sql: str) -> tuple[str, ...]:
    """The ``marts.<relation>`` names a query reads, sorted and unique.

    Args:
        sql: the native query text.

    Returns:
        Relation names without the schema.
    """
    return tuple(sorted(set(MART_RE.findall(sql))))


def _require(mapping: dict[str, Any], name: str, where: str) -> Any:
    if name not in mapping or mapping[name] in (None, ""):
        raise ContentError(f"{where}: missing '{name}'")
    return mapping[name]


def _parse_question(raw: dict[str, Any], where: str) -> Question:
    key = _require(raw, "key", where)
    where = f"{where} question '{key}'"
    sql = str(_require(raw, "sql", where)).strip()
    tags_raw = raw.get("template_tags") or {}
    tags = []
    for name, spec in tags_raw.items():
        spec = {"type": spec} if isinstance(spec, str) else dict(spec or {})
        tags.append(
            TemplateTag(
                name=name,
                type=spec.get("type", "text"),
                display_name=spec.get("display_name", name.replace("_", " ").capitalize()),
            )
        )
    return Question(
        key=key,
        name=_require(raw, "name", where),
        description=str(raw.get("description", "")).strip(),
        display=_require(raw, "display", where),
        sql=sql,
        columns=tuple(_require(raw, "columns", where)),
        template_tags=tuple(tags),
        visualization_settings=dict(raw.get("visualization_settings") or {}),
        marts=sql_marts(sql),
    )


def _parse_dashboard(raw: dict[str, Any], where: str) -> Dashboard:
    key = _require(raw, "key", where)
    where = f"{where} dashboard '{key}'"
    parameters = tuple(
        DashboardParameter(
            key=_require(p, "key", where),
            name=_require(p, "name", where),
            type=_require(p, "type", where),
            values=tuple(p.get("values") or ()),
        )
        for p in raw.get("parameters") or []
    )
    cards = []
    for card in _require(raw, "cards", where):
        cards.append(
            Dashcard(
                question=_require(card, "question", where),
                row=int(_require(card, "row", where)),
                col=int(card.get("col", 0)),
                size_x=int(_require(card, "size_x", where)),
                size_y=int(_require(card, "size_y", where)),
                parameter_mappings=dict(card.get("parameter_mappings") or {}),
                auto_mappings=card.get("parameter_mappings") is None,
            )
        )
    return Dashboard(
        key=key,
        name=_require(raw, "name", where),
        description=str(raw.get("description", "")).strip(),
        parameters=parameters,
        cards=tuple(cards),
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict):
        raise ContentError(f"{path}: expected a mapping at the top level")
    return data


def _resolve_auto_mappings(dashboard: Dashboard, questions: dict[str, Question]) -> Dashboard:
    cards = []
    for card in dashboard.cards:
        question = questions.get(card.question)
        if card.auto_mappings and question is not None:
            mappings = {p.key: p.key for p in dashboard.parameters if p.key in question.tag_names}
            card = replace(card, parameter_mappings=mappings)
        cards.append(card)
    return replace(dashboard, cards=tuple(cards))


def load_content(content_dir: Path | None = None) -> Content:
    """Parse and validate the question, dashboard and alert files.

    Args:
        content_dir: the folder holding ``questions/``, ``dashboards/`` and ``alerts.yml``;
            ``metabase/content`` when omitted.

    Returns:
        The validated content.

    Raises:
        ContentError: when a file is malformed or the content is inconsistent.
    """
    root = Path(content_dir) if content_dir is not None else DEFAULT_CONTENT_DIR
    questions: dict[str, Question] = {}
    for path in sorted((root / "questions").glob("*.yml")):
        for raw in _read_yaml(path).get("questions") or []:
            question = _parse_question(raw, str(path.name))
            if question.key in questions:
                raise ContentError(f"{path.name}: duplicate question key '{question.key}'")
            questions[question.key] = question
    dashboards: dict[str, Dashboard] = {}
    for path in sorted((root / "dashboards").glob("*.yml")):
        dashboard = _parse_dashboard(_read_yaml(path), str(path.name))
        if dashboard.key in dashboards:
            raise ContentError(f"{path.name}: duplicate dashboard key '{dashboard.key}'")
        dashboards[dashboard.key] = dashboard
    alerts: dict[str, Alert] = {}
    alerts_path = root / "alerts.yml"
    if alerts_path.exists():
        for raw in _read_yaml(alerts_path).get("alerts") or []:
            where = f"alerts.yml alert '{raw.get('key')}'"
            alert = Alert(
                key=_require(raw, "key", where),
                question=_require(raw, "question", where),
                condition=_require(raw, "condition", where),
                schedule=_require(raw, "schedule", where),
                send_once=bool(raw.get("send_once", False)),
            )
            alerts[alert.key] = alert
    dashboards = {key: _resolve_auto_mappings(d, questions) for key, d in dashboards.items()}
    content = Content(questions=questions, dashboards=dashboards, alerts=alerts)
    problems = validate_content(content)
    if problems:
        raise ContentError("invalid Metabase content:\n- " + "\n- ".join(problems))
    logger.debug(
        "loaded %d questions, %d dashboards, %d alerts from %s",
        len(questions),
        len(dashboards),
        len(alerts),
        root,
    )
    return content


def _validate_question(question: Question) -> list[str]:
    problems: list[str] = []
    where = f"question '{question.key}'"
    if not KEY_RE.match(question.key):
        problems.append(f"{where}: key must be lower_snake_case")
    if question.display not in DISPLAYS:
        problems.append(f"{where}: unknown display '{question.display}'")
    if not question.marts:
        problems.append(f"{where}: the SQL reads no marts.* relation")
    used = sql_template_tags(question.sql)
    declared = question.tag_names
    if used - declared:
        problems.append(f"{where}: SQL uses undeclared template tags {sorted(used - declared)}")
    if declared - used:
        problems.append(f"{where}: declared template tags unused in SQL {sorted(declared - used)}")
    required = used - {
        name for clause in OPTIONAL_RE.findall(question.sql) for name in TAG_RE.findall(clause)
    }
    if required:
        problems.append(
            f"{where}: template tags outside an optional [[ ]] clause {sorted(required)}"
        )
    for tag in question.template_tags:
        if tag.type not in TAG_TYPES:
            problems.append(f"{where}: tag '{tag.name}' has unknown type '{tag.type}'")
    if len(set(question.columns)) != len(question.columns):
        problems.append(f"{where}: duplicate result columns")
    missing = question.visualization_columns() - set(question.columns)
    if missing:
        problems.append(f"{where}: visualization uses columns not in the result {sorted(missing)}")
    settings = question.visualization_settings
    if question.display in ("line", "bar", "area", "row", "combo") and not (
        settings.get("graph.dimensions") and settings.get("graph.metrics")
    ):
        problems.append(f"{where}: a {question.display} chart needs graph.dimensions and metrics")
    if question.display == "pie" and not (
        settings.get("pie.dimension") and settings.get("pie.metric")
    ):
        problems.append(f"{where}: a pie chart needs pie.dimension and pie.metric")
    return problems


def _overlaps(a: Dashcard, b: Dashcard) -> bool:
    return (
        a.col < b.col + b.size_x
        and b.col < a.col + a.size_x
        and a.row < b.row + b.size_y
        and b.row < a.row + a.size_y
    )


def _validate_dashboard(dashboard: Dashboard, questions: dict[str, Question]) -> list[str]:
    problems: list[str] = []
    where = f"dashboard '{dashboard.key}'"
    if not KEY_RE.match(dashboard.key):
        problems.append(f"{where}: key must be lower_snake_case")
    params = {p.key: p for p in dashboard.parameters}
    if len(params) != len(dashboard.parameters):
        problems.append(f"{where}: duplicate parameter keys")
    for param in dashboard.parameters:
        if param.type not in PARAMETER_TYPES:
            problems.append(f"{where}: parameter '{param.key}' has unknown type '{param.type}'")
    seen: set[str] = set()
    mapped_params: set[str] = set()
    for card in dashboard.cards:
        cwhere = f"{where} card '{card.question}'"
        if card.question in seen:
            problems.append(f"{cwhere}: a question may appear once per dashboard")
        seen.add(card.question)
        question = questions.get(card.question)
        if question is None:
            problems.append(f"{cwhere}: no such question")
            continue
        if card.col < 0 or card.row < 0 or card.size_x < 1 or card.size_y < 1:
            problems.append(f"{cwhere}: bad position or size")
        if card.col + card.size_x > GRID_COLUMNS:
            problems.append(f"{cwhere}: wider than the {GRID_COLUMNS}-column grid")
        tags = {tag.name: tag for tag in question.template_tags}
        for param_key, tag_name in card.parameter_mappings.items():
            param = params.get(param_key)
            if param is None:
                problems.append(f"{cwhere}: maps unknown dashboard parameter '{param_key}'")
                continue
            tag = tags.get(tag_name)
            if tag is None:
                problems.append(
                    f"{cwhere}: maps '{param_key}' to unknown template tag '{tag_name}'"
                )
                continue
            if PARAMETER_TYPES.get(param.type) != tag.type:
                problems.append(
                    f"{cwhere}: parameter '{param_key}' ({param.type}) cannot feed "
                    f"tag '{tag_name}' ({tag.type})"
                )
            mapped_params.add(param_key)
    for param_key in params.keys() - mapped_params:
        problems.append(f"{where}: parameter '{param_key}' is wired to no card")
    cards = list(dashboard.cards)
    for i, a in enumerate(cards):
        for b in cards[i + 1 :]:
            if _overlaps(a, b):
                problems.append(f"{where}: cards '{a.question}' and '{b.question}' overlap")
    return problems


def validate_content(content: Content) -> list[str]:
    """Check the content for consistency.

    Every question has a known display, declares exactly the template tags its SQL uses (each
    inside an optional clause) and only refers to declared result columns in its visualization;
    every dashcard references an existing question, fits the 24-column grid and overlaps no
    other; every parameter mapping targets an existing parameter and a template tag of a
    compatible type; every alert watches an existing question (a chart with a goal line for
    goal alerts).

    Args:
        content: the parsed content.

    Returns:
        A list of problems, empty when the content is valid.
    """
    problems: list[str] = []
    for question in content.questions.values():
        problems.extend(_validate_question(question))
    for dashboard in content.dashboards.values():
        problems.extend(_validate_dashboard(dashboard, content.questions))
    for alert in content.alerts.values():
        where = f"alert '{alert.key}'"
        question = content.questions.get(alert.question)
        if question is None:
            problems.append(f"{where}: no such question '{alert.question}'")
            continue
        if alert.condition not in SEND_CONDITIONS:
            problems.append(f"{where}: unknown condition '{alert.condition}'")
        if alert.condition.startswith("goal"):
            settings = question.visualization_settings
            if question.display not in GOAL_DISPLAYS or not settings.get("graph.show_goal"):
                problems.append(f"{where}: goal alerts need a line/bar/area chart with a goal line")
            elif "graph.goal_value" not in settings:
                problems.append(f"{where}: the question has no graph.goal_value")
    return problems
