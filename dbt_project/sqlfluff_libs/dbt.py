"""Stand-ins for dbt's cross-database macros (``dbt.*``) when sqlfluff renders the models.

sqlfluff's jinja templater does not run dbt; these return SQL of the same shape as the real
macros so that the rendered models parse and lint. They are never used by dbt itself.
"""

from __future__ import annotations


def datediff(first_date: str, second_date: str, datepart: str) -> str:
    """``dbt.datediff``: whole ``datepart`` boundaries between two dates."""
    return f"date_diff('{datepart}', {first_date}, {second_date})"


def dateadd(datepart: str, interval: str, from_date_or_timestamp: str) -> str:
    """``dbt.dateadd``: a date plus ``interval`` ``datepart``s."""
    return f"date_add({from_date_or_timestamp}, {interval})"


def date_trunc(datepart: str, date: str) -> str:
    """``dbt.date_trunc``: the start of the ``datepart`` containing the date."""
    return f"date_trunc('{datepart}', {date})"


def generate_series(upper_bound: int) -> str:
    """``dbt.generate_series``: a query of ``generated_number`` from 1 to ``upper_bound``."""
    return f"select generated_number from range(1, {upper_bound} + 1) as t (generated_number)"
