"""Metabase questions and dashboards kept as code, and the code that provisions them.

Public API (settings arrive as arguments; nothing here reads the environment):

- :func:`load_content`: parse and validate ``metabase/content/``;
- :func:`provision`: idempotent provisioning through Metabase's REST API;
- :func:`sync_schema`: ask Metabase to re-sync the warehouse after ``dbt build``;
- :func:`write_dbt_exposures`: generate the dbt exposures file;
- :func:`render_sql`: a question's SQL with filter values, as Metabase would run it.
"""

from metabase.client import MetabaseError
from metabase.content import Content, ContentError, Dashboard, Question, load_content
from metabase.exposures import render_dbt_exposures, write_dbt_exposures
from metabase.provision import ProvisionResult, WarehouseConnection, provision, sync_schema
from metabase.render import RenderError, render_sql

__all__ = [
    "Content",
    "ContentError",
    "Dashboard",
    "MetabaseError",
    "ProvisionResult",
    "Question",
    "RenderError",
    "WarehouseConnection",
    "load_content",
    "provision",
    "render_dbt_exposures",
    "render_sql",
    "sync_schema",
    "write_dbt_exposures",
]
