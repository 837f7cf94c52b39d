"""Contract tests generated from the served OpenAPI document (schemathesis).

Every operation gets a few generated requests, valid and invalid, sent through
the ASGI app with an admin token; each answer must be documented (status code,
content type, headers) and match its response schema, and no request may make
the server fail (5xx). The event stream never ends, so it is tested elsewhere
(the ``test_event_stream_*`` tests in tests/http/test_http_server.py). Bounded: a few
examples per operation, a deadline each.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from flagstaff.http import openapi
from flagstaff.http.app import Settings, create_app
from flagstaff.http.tokens import Permission
from tests._support.http_server import ServerThread, make_token

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    path: Path = tmp_path_factory.mktemp("contract") / "flags.db"
    # Generous auth limits: generated requests carry a good token, but some probe bad ones.
    app = create_app(
        f"sqlite:///{path}", settings=Settings(auth_failures=100_000, force_key=b"contract-test-force-key")
    )
    state = app.state.flagstaff
    seed = {"checkout": 25, "dark_mode": "on", "beta": {"users": ["alice"], "kind": "temporary"}}
    for name, doc in seed.items():
        state.admin.set(name, doc)
    state.admin.set("checkout", 50)
    with ServerThread(app) as server:
        yield server.url, make_token(state, Permission.ADMIN, "contract")
    state.close()


# The document as the package builds it; test_served_document_is_the_package_one checks the app serves it.
schema = schemathesis.openapi.from_dict(openapi.document()).exclude(path="/api/v1/events")


def test_served_document_is_the_package_one(served: tuple[str, str]) -> None:
    url, _ = served
    assert httpx2.get(f"{url}/api/v1/openapi.json").json() == openapi.document()


@schema.parametrize()
@settings(
    max_examples=6,
    deadline=timedelta(seconds=10),  # generous: the machine may be loaded; the count bounds the run
    derandomize=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_api_conforms_to_its_openapi_document(case: Any, served: tuple[str, str]) -> None:
    url, token = served
    # Keep the admin token valid for the whole run: revoking it would turn the rest into 401s.
    if case.method == "DELETE" and case.path == "/api/v1/tokens/{token_id}":
        case.path_parameters = {"token_id": "00000000"}
    case.call_and_validate(base_url=url, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)


# The inputs of issue 12 that committed and then answered 500 over a real uvicorn (the
# unencodable Location header), and a lone surrogate. Each must be refused as documented,
# commit nothing, and be refused the same way when retried (not 409, not 500).
ISSUE_INPUTS = {
    "cjk": {"name": "flag_\u65e5\u672c", "document": "on"},
    "zero-width": {"name": "flag\u200b", "document": "on"},
    "bidi": {"name": "flag\u202eabc", "document": "on"},
    "lone-surrogate-name": {"name": "flag_\ud800", "document": "on"},
    "lone-surrogate-document": {
        "name": "surrogate_doc",
        "document": {"description": "\ud800", "everyone": True},
    },
}


def _revision(url: str, token: str) -> int:
    listing = httpx2.get(f"{url}/api/v1/flags", headers={"Authorization": f"Bearer {token}"})
    assert listing.status_code == 200
    revision: int = listing.json()["revision"]
    return revision


@pytest.mark.parametrize("body", ISSUE_INPUTS.values(), ids=ISSUE_INPUTS.keys())
def test_issue_inputs_are_refused_before_any_commit(body: dict[str, Any], served: tuple[str, str]) -> None:
    url, token = served
    before = _revision(url, token)
    case = schema["/api/v1/flags"]["POST"].Case(body=body, media_type="application/json")
    for _attempt in range(2):
        response = case.call_and_validate(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS
        )
        assert response.status_code in (400, 422), response.text
        assert _revision(url, token) == before


def test_a_good_name_is_created_once_and_its_retry_is_409(served: tuple[str, str]) -> None:
    url, token = served
    case = schema["/api/v1/flags"]["POST"].Case(body={"name": "issue12.ok-name_1", "document": "on"})
    headers = {"Authorization": f"Bearer {token}"}
    first = case.call_and_validate(base_url=url, headers=headers, checks=CHECKS)
    assert first.status_code == 201
    assert first.headers["location"] == ["/api/v1/flags/issue12.ok-name_1"]
    retry = case.call_and_validate(base_url=url, headers=headers, checks=CHECKS)
    assert retry.status_code == 409
