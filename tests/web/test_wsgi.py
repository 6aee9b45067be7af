"""The web app under a real WSGI server (the standard library's ``wsgiref``), as a project
that serves WSGI mounts it: pages, the JSON API and the read-only rule behave as under ASGI."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from taskjobs.store import Store
from taskjobs.web import create_wsgi_app
from tests.web.seed import Seeded


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:  # no access log on the test's output
        pass


@pytest.fixture(scope="module")
def wsgi_url(seeded_store: Store, seeded: Seeded) -> Iterator[str]:
    app = create_wsgi_app(seeded_store, url_prefix="/taskjobs", refresh=0)
    server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/taskjobs"
    finally:
        server.shutdown()
        server.server_close()


def test_pages_and_json_answer_under_a_wsgi_server(wsgi_url: str, seeded: Seeded) -> None:
    with urllib.request.urlopen(f"{wsgi_url}/jobs/{seeded.failed_member}", timeout=30) as page:
        assert page.status == 200
        html = page.read().decode()
    # Its links name the server and the prefix the WSGI server was reached under.
    assert seeded.failed_member in html and f'href="{wsgi_url}/jobs/{seeded.root}"' in html
    with urllib.request.urlopen(f"{wsgi_url}/api/task/info/{seeded.failed_member}") as answer:
        task = json.load(answer)
    assert (task["task-id"], task["state"]) == (seeded.failed_member, "FAILURE")
    with urllib.request.urlopen(f"{wsgi_url}/healthz", timeout=30) as health:
        assert health.status == 200


def test_a_write_method_is_refused_under_a_wsgi_server(wsgi_url: str, seeded: Seeded) -> None:
    request = urllib.request.Request(f"{wsgi_url}/api/v1/jobs", method="POST", data=b"{}")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 405
    refused.value.close()
