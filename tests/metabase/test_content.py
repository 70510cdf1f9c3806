"""The content files: validation, template-tag rendering and the generated dbt exposures."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from metabase import ContentError, load_content, render_dbt_exposures, render_sql
from metabase.content import DEFAULT_CONTENT_DIR, sql_marts, sql_template_tags, validate_content
from metabase.exposures import write_dbt_exposures
from metabase.render import RenderError

REPO = Path(__file__).resolve().parents[2]
EXPOSURES = REPO / "dbt_project" / "models" / "exposures" / "_metabase__exposures.yml"


def test_committed_content_is_consistent() -> None:
    content = load_content()
    assert validate_content(content) == []
    assert {d.name for d in content.dashboards.values()} == {
        "Retail overview",
        "Customers",
        "Data quality",
    }
    for dashboard in content.dashboards.values():
        params = {p.key: p for p in dashboard.parameters}
        for card in dashboard.cards:
            question = content.questions[card.question]  # every dashcard's question exists
            tags = {t.name: t for t in question.template_tags}
            for param_key, tag_name in card.parameter_mappings.items():
                assert param_key in params
                assert tag_name in tags, f"{dashboard.key}/{card.question}: {tag_name}"
            assert question.visualization_columns() <= set(question.columns)
            assert card.col + card.size_x <= 24
    for question in content.questions.values():
        assert sql_template_tags(question.sql) == question.tag_names
        assert question.marts and all(not m.startswith("marts") for m in question.marts)


def test_retail_overview_filters_reach_the_sales_questions() -> None:
    content = load_content()
    overview = content.dashboards["retail_overview"]
    assert [p.key for p in overview.parameters] == [
        "date_from",
        "date_to",
        "region",
        "store",
        "category",
    ]
    mapped = {c.question: set(c.parameter_mappings) for c in overview.cards}
    for key in ("kpi_stores", "kpi_sales", "kpi_revenue", "kpi_avg_sale", "revenue_trend"):
        assert mapped[key] == {"date_from", "date_to", "region", "store", "category"}
    assert mapped["top_products_by_region"] == {"region", "category"}
    displays = {content.questions[c.question].display for c in overview.cards}
    assert {"scalar", "line", "bar", "pie"} <= displays


def test_the_alert_watches_the_duplicate_ratio_against_half() -> None:
    content = load_content()
    (alert,) = content.alerts.values()
    question = content.questions[alert.question]
    assert alert.condition == "goal_above"
    assert question.marts == ("data_quality_by_file",)
    assert question.visualization_settings["graph.show_goal"] is True
    assert question.visualization_settings["graph.goal_value"] == 0.5
    assert question.visualization_settings["graph.metrics"] == ["duplicate_ratio"]


def _copy_content(tmp_path: Path) -> Path:
    target = tmp_path / "content"
    shutil.copytree(DEFAULT_CONTENT_DIR, target)
    return target


def _edit(path: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


@pytest.mark.parametrize(
    ("file", "change", "message"),
    [
        (
            "dashboards/customers.yml",
            lambda d: d["cards"].append(
                {"question": "nope", "row": 40, "col": 0, "size_x": 4, "size_y": 4}
            ),
            "card 'nope': no such question",
        ),
        (
            "dashboards/customers.yml",
            lambda d: d["cards"][1].update(parameter_mappings={"date_from": "month_from"}),
            "unknown template tag 'month_from'",
        ),
        (
            "dashboards/customers.yml",
            lambda d: d["cards"][1].update(parameter_mappings={"region": "date_from"}),
            "unknown dashboard parameter 'region'",
        ),
        (
            "dashboards/customers.yml",
            lambda d: d["cards"][1].update(col=10),
            "wider than the 24-column grid",
        ),
        (
            "dashboards/customers.yml",
            lambda d: d["cards"][2].update(row=5),
            "overlap",
        ),
        (
            "questions/customers.yml",
            lambda d: d["questions"][1]["visualization_settings"].update(
                {"graph.metrics": ["new_customers", "lost_customers"]}
            ),
            "columns not in the result ['lost_customers']",
        ),
        (
            "questions/customers.yml",
            lambda d: d["questions"][1].update(
                sql=d["questions"][1]["sql"] + "[[and 1 = {{store}}]]"
            ),
            "undeclared template tags ['store']",
        ),
        (
            "questions/customers.yml",
            lambda d: d["questions"][1].update(
                sql=d["questions"][1]["sql"].replace(
                    "[[and activity.sale_month <= {{date_to}}]]", ""
                )
            ),
            "unused in SQL ['date_to']",
        ),
        (
            "questions/data_quality.yml",
            lambda d: d["questions"][5]["visualization_settings"].pop("graph.show_goal"),
            "goal alerts need",
        ),
    ],
)
def test_validation_rejects_inconsistent_content(
    tmp_path: Path,
    file: str,
    change: Callable[[dict[str, Any]], Any],
    message: str,
) -> None:
    root = _copy_content(tmp_path)
    load_content(root)  # the copy itself is valid
    _edit(root / file, change)
    with pytest.raises(ContentError, match=re.escape(message)):
        load_content(root)


def test_render_sql_removes_unset_optional_clauses_and_quotes_values() -> None:
    question = load_content().questions["revenue_by_region"]
    bare = render_sql(question)
    assert "{{" not in bare and "[[" not in bare
    assert "sales.region =" not in bare and "sale_date >=" not in bare

    filtered = render_sql(
        question,
        {"region": "O'North", "date_from": dt.date(2026, 1, 2), "date_to": "2026-01-04"},
    )
    assert "and sales.region = 'O''North'" in filtered
    assert "and sales.sale_date >= date '2026-01-02'" in filtered
    assert "and sales.sale_date <= date '2026-01-04'" in filtered
    assert "sales.store_id =" not in filtered

    with pytest.raises(RenderError, match="bad value for 'date_from'"):
        render_sql(question, {"date_from": "last monday"})
    with pytest.raises(RenderError, match="no template tags"):
        render_sql(question, {"city": "Kazan"})


def test_sql_marts_reads_schema_qualified_relations() -> None:
    sql = "select * from marts.fct_daily_sales s join marts.dim_stores d on true, raw.x"
    assert sql_marts(sql) == ("dim_stores", "fct_daily_sales")


def test_exposures_list_every_dashboard_with_the_marts_it_reads(tmp_path: Path) -> None:
    content = load_content()
    path = tmp_path / "exposures.yml"
    write_dbt_exposures(content, path)
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    exposures = {e["name"]: e for e in document["exposures"]}
    assert set(exposures) == set(content.dashboards)
    for key, dashboard in content.dashboards.items():
        exposure = exposures[key]
        assert exposure["type"] == "dashboard"
        assert exposure["label"] == dashboard.name
        expected = {m for q in dashboard.questions() for m in content.questions[q].marts}
        assert set(exposure["depends_on"]) == {f"ref('{m}')" for m in expected}
        assert exposure["owner"]["name"]
    assert "ref('data_quality_by_file')" in exposures["data_quality"]["depends_on"]
    assert "ref('fct_daily_sales')" in exposures["retail_overview"]["depends_on"]


def test_committed_exposures_file_matches_the_generator() -> None:
    assert EXPOSURES.exists(), "run: uv run --no-sync python -m metabase " + str(EXPOSURES)
    assert EXPOSURES.read_text(encoding="utf-8") == render_dbt_exposures(load_content()), (
        "the exposures file drifted from metabase/content: regenerate it with "
        f"`uv run --no-sync python -m metabase {EXPOSURES.relative_to(REPO)}`"
    )
