"""Basic auth, the URL prefix, and the app's own configuration errors."""

from __future__ import annotations

import base64

import pytest
from starlette.testclient import TestClient

from taskjobs.errors import ConfigurationError, InvalidInputError
from taskjobs.store import Store
from taskjobs.web import create_app
from tests.web.seed import API_ROUTES, PAGES, Seeded


def login(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def guarded(seeded_store: Store, seeded: Seeded) -> TestClient:
    return TestClient(create_app(seeded_store, basic_auth="ada:lovelace,grace:hopper"))


@pytest.mark.parametrize(
    "path", [*PAGES, *API_ROUTES, "/static/taskjobs.css", "/metrics", "/no/such/route"]
)
def test_with_auth_every_route_asks_for_a_login(guarded: TestClient, path: str) -> None:
    answer = guarded.get(path)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith('Basic realm="taskjobs"')
    assert "wf-root" not in answer.text


@pytest.mark.parametrize(
    "headers",
    [
        login("ada", "hopper"),
        login("ada", "lovelac"),
        login("eve", "lovelace"),
        {"Authorization": "Bearer ada:lovelace"},
        {"Authorization": "Basic not-base64!"},
        {"Authorization": "Basic " + base64.b64encode(b"ada").decode()},
    ],
)
def test_a_wrong_login_is_refused(guarded: TestClient, headers: dict[str, str]) -> None:
    assert guarded.get("/jobs", headers=headers).status_code == 401


def test_each_configured_login_is_let_in(guarded: TestClient) -> None:
    for user, password in (("ada", "lovelace"), ("grace", "hopper")):
        assert guarded.get("/jobs", headers=login(user, password)).status_code == 200


def test_the_health_check_needs_no_login(guarded: TestClient) -> None:
    assert guarded.get("/healthz").status_code == 200


@pytest.mark.parametrize("given", ["ada", "ada:", ":secret", "ada:lovelace,,", "ada:x,bob"])
def test_a_malformed_login_setting_is_refused_naming_it_without_its_password(
    store: Store, given: str
) -> None:
    with pytest.raises(ConfigurationError, match="invalid basic auth") as raised:
        create_app(store, basic_auth=given)
    assert "lovelace" not in str(raised.value) and "secret" not in str(raised.value)


def test_under_a_prefix_every_route_and_link_carries_it(store: Store, fresh_seeded: Seeded) -> None:
    client = TestClient(create_app(store, url_prefix="/ops/jobs/"))
    page = client.get("/ops/jobs/jobs")
    assert page.status_code == 200
    assert 'href="http://testserver/ops/jobs/static/taskjobs.css"' in page.text
    assert f'href="http://testserver/ops/jobs/jobs/{fresh_seeded.root}"' in page.text
    assert client.get("/ops/jobs/healthz").status_code == 200
    assert client.get("/jobs").status_code == 404


def test_a_prefix_with_auth_leaves_its_own_health_check_open(store: Store) -> None:
    client = TestClient(create_app(store, url_prefix="/ops", basic_auth="a:b"))
    assert client.get("/ops/healthz").status_code == 200
    assert client.get("/ops/").status_code == 401


@pytest.mark.parametrize("prefix", ["/a//b", "/../x", "/./"])
def test_a_malformed_prefix_is_refused(store: Store, prefix: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid url prefix"):
        create_app(store, url_prefix=prefix)
