"""PostgreSQL sessions plan prepared statements with their parameters."""

from __future__ import annotations

from sqlalchemy import text

from core.store.db import make_engine


def test_prepared_statements_get_custom_plans_and_url_options_stay(postgres_url: str) -> None:
    # a generic plan made while a table was empty stays a sequential scan as it
    # grows (the collect's duplicate check): every plan is made with its values
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW plan_cache_mode")).scalar() == "force_custom_plan"
            # the URL's own options (here the test's search_path) are kept
            assert conn.execute(text("SHOW search_path")).scalar().startswith("t_")
        with engine.connect() as conn:  # a pooled connection keeps it
            assert conn.execute(text("SHOW plan_cache_mode")).scalar() == "force_custom_plan"
    finally:
        engine.dispose()
