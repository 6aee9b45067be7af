"""The pages, through the ASGI test client on every database: what each shows of the seeded
jobs, the job list's filters and pages, errors, and hostile text shown inert."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from taskjobs.store import Store
from taskjobs.web import create_app
from tests.web.seed import API_ROUTES, HOSTILE, PAGES, Seeded


def job_ids(html: str) -> list[str]:
    """The ids of the jobs a page's job table links to, in order."""
    return re.findall(r'<a class="id" href="[^"]*/jobs/[^"]+" title="([^"]+)"', html)


def state_cards(html: str) -> dict[str, str]:
    """The dashboard's count of jobs per state."""
    return dict(
        re.findall(r'<span class="label">(\w+)</span><span class="value">(\d+)</span>', html)
    )


def test_the_dashboard_shows_the_report_of_the_window(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert state_cards(page.text) == {"pending": "2", "running": "1", "finished": "4", "error": "2"}
    assert "shop.ship" in page.text and "LookupError" in page.text
    assert "33.3%" in page.text, "the failure rate of 2 errors among 6 ended jobs"
    bars = re.findall(r'<rect class="bar-(finished|failed)"', page.text)
    assert bars.count("failed") >= 1 and bars.count("finished") >= 1
    assert "job-running-0008" in page.text, "the job running longer than 10 minutes is listed"


def test_the_dashboards_window_leaves_older_jobs_out(client: TestClient) -> None:
    page = client.get("/?window=4m")
    assert page.status_code == 200
    # Only the job sent 3 minutes ago is in the last 4 minutes; the hostile one (5 min) is not.
    assert state_cards(page.text) == {"pending": "1", "running": "0", "finished": "0", "error": "0"}
    assert "shop.ship" not in page.text
    assert 'aria-current="true">1h<' in client.get("/?window=1h").text


def test_the_job_list_is_newest_first_and_filters_by_each_field(
    client: TestClient, seeded: Seeded
) -> None:
    everything = job_ids(client.get("/jobs").text)
    assert len(everything) == len(seeded.all_ids())
    assert everything[0] == seeded.pending and everything[-1] == seeded.root
    cases = {
        "state=error": [seeded.hostile, seeded.failed_member],
        "name=shop.ship": list(reversed(seeded.members)),
        "user=grace": [seeded.pending, seeded.running],
        "worker=celery%40alpha": [seeded.retrying, seeded.running, seeded.child, seeded.root],
        "id=wf-member": list(reversed(seeded.members)),
        "window=6h&state=running": [seeded.running],
        "celery_state=RETRY": [seeded.retrying],
    }
    for query, expected in cases.items():
        assert job_ids(client.get(f"/jobs?{query}").text) == expected, query


def test_the_job_list_pages_by_keyset_keeping_its_filters(
    fresh_client: TestClient, store: Store, fresh_seeded: Seeded
) -> None:
    from taskjobs import lifecycle
    from taskjobs.lifecycle import Lineage

    for index in range(60):
        store.apply(
            lifecycle.published(
                f"bulk-{index:03}", name="bulk.task", user=None, request=None, queue=None,
                lineage=Lineage(), retries=0, eta=None, delivery=None,
                at=fresh_seeded.now - timedelta(hours=1, seconds=index),
            )
        )  # fmt: skip
    first = fresh_client.get("/jobs?name=bulk.task").text
    assert job_ids(first) == [f"bulk-{i:03}" for i in range(50)]
    older = re.search(r'<a rel="next" href="([^"]+)"', first)
    assert older is not None
    second = fresh_client.get(older.group(1).replace("&amp;", "&")).text
    assert job_ids(second) == [f"bulk-{i:03}" for i in range(50, 60)]
    assert 'rel="next"' not in second


def test_a_job_page_shows_every_part_of_the_job_and_its_workflow(
    client: TestClient, seeded: Seeded
) -> None:
    page = client.get(f"/jobs/{seeded.failed_member}").text
    shown_parts = (
        "shop.ship", "celery@beta", "LookupError: parcel 3 is lost", "&#34;parcel&#34;: 3",
        "STARTED", "FAILURE", "Traceback (most recent call last)",
    )  # fmt: skip
    for shown in shown_parts:
        assert shown in page, shown
    workflow = page[page.index('class="panel workflow"') :]
    assert f'href="http://testserver/jobs/{seeded.root}"' in workflow
    assert f'href="http://testserver/jobs/{seeded.child}"' in workflow, "its parent"
    for member in seeded.members[:2]:
        assert f'href="http://testserver/jobs/{member}"' in workflow, "its group siblings"
    assert "5 jobs under its root" in workflow
    assert '<span class="state state-error">error</span>' in workflow, "the workflow failed"


def test_a_root_job_lists_its_children(client: TestClient, seeded: Seeded) -> None:
    page = client.get(f"/jobs/{seeded.child}").text
    children = page[page.index("<h3>Children</h3>") :]
    assert all(f"/jobs/{member}" in children for member in seeded.members)


def test_a_job_is_found_by_a_unique_prefix_of_its_id(client: TestClient, seeded: Seeded) -> None:
    assert "shop.checkout" in client.get("/jobs/wf-root").text


def test_the_workers_page_tells_alive_silent_and_stopped_apart(client: TestClient) -> None:
    page = client.get("/workers").text
    states = dict(
        re.findall(
            r'<td class="name">(celery@\w+)</td>\s*<td><span class="state worker-(\w+)"', page
        )
    )
    assert states == {"celery@alpha": "alive", "celery@beta": "silent", "celery@gamma": "stopped"}


def test_a_lost_job_is_listed_on_the_workers_page(fresh_client: TestClient, store: Store) -> None:
    from taskjobs.model import utcnow

    store.reap(silent_since=utcnow() - timedelta(minutes=1), worker=None, at=utcnow(),
               reason="worker silent")  # fmt: skip
    lost = fresh_client.get("/workers").text.split("Jobs marked lost")[1]
    assert job_ids(lost) == [], "beta, the silent worker, ran nothing still running"
    store.reap(silent_since=None, worker="celery@alpha", at=utcnow(), reason="worker silent")
    lost = fresh_client.get("/workers").text.split("Jobs marked lost")[1]
    assert job_ids(lost) == ["job-running-0008"], "the job running on alpha; not the one waiting"


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/jobs?state=done", "invalid state 'done'"),
        ("/jobs?window=forever", "invalid window 'forever'"),
        ("/jobs?colour=red", "invalid parameter 'colour'"),
        ("/jobs?after=nobody", "unknown job id 'nobody'"),
        ("/?window=0h", "invalid window '0h'"),
        ("/workers?since=1h", "invalid parameter 'since'"),
    ],
)
def test_a_bad_parameter_is_a_400_that_names_it(client: TestClient, path: str, named: str) -> None:
    page = client.get(path)
    assert page.status_code == 400
    assert named in html.unescape(page.text)


def test_an_unknown_job_is_a_404_page(client: TestClient) -> None:
    page = client.get("/jobs/no-such-job")
    assert page.status_code == 404
    assert "no job with id 'no-such-job'" in html.unescape(page.text)


def test_an_ambiguous_id_prefix_is_a_400_naming_the_candidates(client: TestClient) -> None:
    page = client.get("/jobs/wf-")
    assert page.status_code == 400 and "ambiguous" in page.text


@pytest.mark.parametrize("path", [*PAGES, *API_ROUTES, "/metrics", "/healthz"])
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_no_route_takes_a_change(client: TestClient, path: str, method: str) -> None:
    answer = client.request(method, path)
    assert answer.status_code == 405
    assert "GET" in answer.headers["allow"]


@pytest.mark.parametrize("path", API_ROUTES)
def test_an_api_error_is_json_even_without_a_route(client: TestClient, path: str) -> None:
    answer = client.post(path)
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"error": "Method Not Allowed"}
    missing = client.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}


def test_an_unknown_page_is_the_404_page(client: TestClient) -> None:
    page = client.get("/no/such/page")
    assert page.status_code == 404 and "<html" in page.text


@pytest.mark.parametrize("path", [*PAGES, "/jobs/job-hostile-0010", "/jobs?user=" + "x"])
def test_hostile_text_is_escaped_everywhere(client: TestClient, path: str) -> None:
    page = client.get(path).text
    assert "<script>window.hostile" not in page
    assert 'onerror="window.hostile' not in page
    assert "<img src=x" not in page


def test_the_hostile_job_shows_its_text_escaped(client: TestClient, seeded: Seeded) -> None:
    page = client.get(f"/jobs/{seeded.hostile}").text
    assert "&lt;script&gt;window.hostile=1&lt;/script&gt;" in page
    assert HOSTILE not in page


def test_every_answer_carries_a_policy_without_inline_script(client: TestClient) -> None:
    for path in [*PAGES, "/static/taskjobs.css", "/jobs/nope"]:
        headers = client.get(path).headers
        policy = headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy, path
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"


def test_a_page_reloads_itself_unless_paused(client: TestClient) -> None:
    assert '<meta http-equiv="refresh" content="10">' in client.get("/").text
    assert 'http-equiv="refresh"' not in client.get("/?refresh=0").text


def test_the_pages_load_nothing_from_outside_the_server(client: TestClient) -> None:
    for path in PAGES:
        page = client.get(path).text
        sources = re.findall(r'(?:src|href)="([^"#?][^"]*)"', page)
        outside = [s for s in sources if not s.startswith("http://testserver/")]
        assert outside == [], (path, outside)


def test_a_server_error_tells_the_client_nothing_of_it(store: Store, seeded: Seeded) -> None:
    class Broken:
        def __getattr__(self, name: str) -> object:
            raise RuntimeError("secret internals: password=hunter2")

    app = create_app(Broken())  # type: ignore[arg-type]
    with TestClient(app, raise_server_exceptions=False) as broken:
        page = broken.get("/jobs")
    assert page.status_code == 500
    assert "hunter2" not in page.text and "Traceback" not in page.text
