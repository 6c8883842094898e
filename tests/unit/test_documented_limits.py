"""Every documented limit is the enforced one: the OpenAPI schema's maxLength of each field
that the domain or the database also limits equals (or, for text normalised first, stays
within) that limit, so a client that follows the documentation is never refused for a
length it was told is fine, nor surprised by a 500 from a column too short."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import String

from booking.domain.contact import NAME_MAX
from queue_server.app import create_app
from queue_server.db.tables import Base
from queue_server.service.desk import TEXT_MAX
from queue_server.service.ratings import COMMENT_MAX
from queue_server.settings import Settings


def column(table: str, name: str) -> int:
    found = Base.metadata.tables[table].columns[name].type
    assert isinstance(found, String) and found.length, (table, name)
    return int(found.length)


# (schema, field) → the limit the server enforces, and whether the documented maxLength must
# equal it ("=") or may be no more than it ("<=": input that is normalised before it is kept).
ENFORCED: dict[tuple[str, str], tuple[int, str]] = {
    ("BookIn", "name"): (NAME_MAX, "="),
    ("StaffBookIn", "name"): (NAME_MAX, "="),
    ("VisitorIn", "name"): (NAME_MAX, "="),
    ("CaseIn", "summary"): (TEXT_MAX, "="),
    ("CaseNoteIn", "text"): (TEXT_MAX, "="),
    ("CaseAnswerIn", "answer"): (TEXT_MAX, "="),
    ("RatingIn", "comment"): (COMMENT_MAX, "="),
    ("LoginIn", "username"): (column("users", "username"), "<="),
    ("StaffIn", "display_name"): (column("users", "display_name"), "<="),
    ("HallIn", "name_zh"): (column("halls", "name_zh"), "<="),
    ("HallIn", "name_en"): (column("halls", "name_en"), "<="),
    ("ServiceIn", "name_zh"): (column("services", "name_zh"), "<="),
    ("ServiceIn", "name_en"): (column("services", "name_en"), "<="),
    ("CounterIn", "name"): (column("counters", "name"), "<="),
    ("DeviceIn", "name"): (column("devices", "name"), "<="),
    ("NoticeIn", "notice"): (column("halls", "notice"), "<="),
    ("IssueIn", "priority"): (column("tickets", "priority"), "<="),
    ("CheckInIn", "priority"): (column("tickets", "priority"), "<="),
}


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    var: Path = tmp_path_factory.mktemp("var")
    app = create_app(Settings(var_dir=var, scheduler=False))
    return app.openapi_schema.to_schema()["components"]["schemas"]  # type: ignore[no-any-return]


def max_length(schema: dict[str, Any]) -> int | None:
    """The documented maxLength of a property (through its oneOf/anyOf with null)."""
    if "maxLength" in schema:
        return int(schema["maxLength"])
    for option in schema.get("oneOf", []) + schema.get("anyOf", []):
        found = max_length(option)
        if found is not None:
            return found
    return None


@pytest.mark.parametrize(("where", "limit"), ENFORCED.items(), ids=lambda x: str(x))
def test_the_documented_limit_is_the_enforced_one(
    schemas: dict[str, Any], where: tuple[str, str], limit: tuple[int, str]
) -> None:
    schema_name, field = where
    enforced, relation = limit
    documented = max_length(schemas[schema_name]["properties"][field])
    assert documented is not None, f"{schema_name}.{field} documents no maxLength"
    if relation == "=":
        assert documented == enforced, f"{schema_name}.{field}: {documented} != {enforced}"
    else:
        assert documented <= enforced, f"{schema_name}.{field}: {documented} > {enforced}"
