"""Fuzz the HTTP API against its own OpenAPI document (hypothesis): never a 5xx.

Every GET operation in /openapi.json gets random query strings: values of the declared
types, out-of-range numbers, NaN/inf, junk text, empty strings, unknown parameters.
(Schemathesis would do the same generation; this keeps the dependency set unchanged.)
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JUNK = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=80),
    st.sampled_from(
        ["", "VIDEO", "AUDIO", "MIXED", "en", "u1", "1e309", "-0", "null", "\x00", "u" * 65]
    ),
)


def _value(schema: dict) -> st.SearchStrategy[str]:
    options = [JUNK]
    for alt in schema.get("anyOf", [schema]):
        if alt.get("type") == "integer":
            options.append(
                st.integers(alt.get("minimum", -5) - 5, alt.get("maximum", 200) + 5).map(str)
            )
        elif alt.get("type") == "number":
            options.append(st.floats(-2, 3).map(str))
        elif "enum" in alt:
            options.append(st.sampled_from(alt["enum"]))
        elif "$ref" in alt:
            options.append(st.sampled_from(["VIDEO", "AUDIO"]))
    return st.one_of(options)


def test_no_5xx_for_any_query(serving):
    import requests

    spec = serving.get("/openapi.json").json()
    operations = []
    for path, methods in spec["paths"].items():
        if "get" in methods:
            params = {p["name"]: p.get("schema", {}) for p in methods["get"].get("parameters", [])}
            operations.append((path, params))
    assert any(p == "/api/v1/content/feed" for p, _ in operations)

    @st.composite
    def request(draw):
        path, params = draw(st.sampled_from(operations))
        query = {}
        for name, schema in params.items():
            if draw(st.booleans()) or (name == "user_id" and draw(st.booleans())):
                query[name] = draw(_value(schema))
        if draw(st.integers(0, 9)) == 0:
            query[draw(st.text(min_size=1, max_size=10))] = draw(JUNK)
        return path, query

    seen: list[int] = []

    @settings(
        max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(request())
    def check(call):
        path, query = call
        response = requests.get(serving.base_url + path, params=query, timeout=30)
        seen.append(response.status_code)
        assert response.status_code < 500, (path, query, response.text[:300])

    check()
    assert 200 in seen and 422 in seen
