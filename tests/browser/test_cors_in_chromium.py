"""CORS from outside: a real browser (headless Chromium, driven by Selenium) calls the local stack
from another origin, as a web app would (docs/api.md: the local stack allows its own console and
``http://localhost:*``; the template takes the allowed origins as a stack parameter).

* From an allowed origin (``http://localhost:<page port>``, ``http://127.0.0.1:<page port>``) the
  page's ``fetch()`` calls with ``Authorization`` and ``Idempotency-Key`` — each needs a preflight —
  read the balance, submit (202), replay the submit and follow ``Location``; JS reads the
  ``Location`` and ``Idempotent-Replayed`` headers, which only the exposed-headers list lets it see.
* From an origin the API does not allow (``http://evil.test:<page port>``, mapped to 127.0.0.1
  inside Chromium only) the same calls end in the browser's ``TypeError``, the console says CORS
  blocked them, nothing was charged, and a ``no-cors`` request shows the API itself was reachable.

Needs Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``, ``/usr/bin/chromedriver``;
``CHROMIUM`` / ``CHROMEDRIVER`` point elsewhere). ``make browser-check`` runs it; .ci/run installs them.
"""

from __future__ import annotations

import functools
import os
import threading
import uuid
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from devstack.process import StackProcess

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
REFUSED_HOST = "evil.test"  # resolved to 127.0.0.1 by Chromium's own resolver rules, nowhere else
# Headless, as root, on a machine without internet: no sandbox, no GPU, no QUIC, no calls home.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    f"--host-resolver-rules=MAP {REFUSED_HOST} 127.0.0.1",
)
SUBMIT = {"model": "minimax-video-01", "input": {"prompt": "a heron taking off"}}
CREDITS = 20

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    """``python -m devstack`` on free ports (no crash fires at rate 0); always stopped."""
    stack = StackProcess(
        seed=7,
        time_scale=0.02,
        crash_rate=0.0,
        reconcile_every_s=10,
        reconcile_grace_s=10,
        log_path=ROOT / ".local" / "browser-check-stack.log",
    )
    with stack:
        yield stack.api


class _QuietPages(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def page_port() -> Iterator[int]:
    """This folder served over HTTP on its own port: every host name that reaches it is an origin."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietPages, directory=str(HERE)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _user(api: str) -> tuple[str, str]:
    user_id = f"browser-{uuid.uuid4().hex[:8]}"
    reply = requests.post(f"{api}/_local/users", json={"user_id": user_id, "credits": CREDITS}, timeout=10)
    reply.raise_for_status()
    return user_id, str(reply.json()["token"])


def _run(browser: webdriver.Chrome, page: str, call: str, *args: Any) -> Any:
    """Open ``page`` and await ``call(*args)`` in it (a function of cors_page.html)."""
    browser.get(page)
    assert browser.title == "videogen CORS check"
    return browser.execute_async_script(
        f"const done = arguments[arguments.length - 1];"
        f"{call}(...Array.from(arguments).slice(0, -1)).then(done, e => done({{thrown: String(e)}}));",
        *args,
    )


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_an_allowed_origin_runs_the_app_flow(api, page_port, browser, host):
    _, token = _user(api)
    origin = f"http://{host}:{page_port}"
    out = _run(browser, f"{origin}/cors_page.html", "appFlow", api, token, uuid.uuid4().hex, SUBMIT)

    assert out.get("origin") == origin != api, out  # a cross-origin page, not the API's own
    assert out["credits"]["status"] == 200, out
    assert out["credits"]["body"]["balance"] == CREDITS

    submit, replay = out["submit"], out["replay"]
    assert submit["status"] == 202, submit
    job_id = submit["body"]["job"]["id"]
    assert submit["location"] == f"/v1/videos/{job_id}"  # readable from JS: Location is exposed
    assert submit["replayed"] is None
    assert submit["body"]["credits"]["balance"] == CREDITS - submit["body"]["credits"]["charged"]

    assert replay["status"] == 202, replay
    assert replay["replayed"] == "true"  # readable from JS: Idempotent-Replayed is exposed
    assert replay["location"] == submit["location"]
    assert replay["body"] == submit["body"]

    assert out["job"]["status"] == 200, out["job"]
    assert out["job"]["body"]["id"] == job_id


def test_a_refused_origin_is_blocked_by_the_browser(api, page_port, browser):
    user_id, token = _user(api)
    origin = f"http://{REFUSED_HOST}:{page_port}"
    browser.get_log("browser")  # forget the earlier pages' console
    out = _run(browser, f"{origin}/cors_page.html", "refusedFlow", api, token, uuid.uuid4().hex)

    assert out.get("origin") == origin, out
    for call in ("credits", "submit", "simple"):  # preflighted (Authorization) and simple requests alike
        assert out[call]["error"] == "TypeError", (call, out[call])
    assert out["reachable"] == {"status": 0, "type": "opaque"}  # the API answered; only CORS hid it

    console = " ".join(entry["message"] for entry in browser.get_log("browser"))
    assert f"from origin '{origin}' has been blocked by CORS policy" in console, console

    balance = requests.get(f"{api}/v1/credits", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert balance.json()["balance"] == CREDITS, (user_id, balance.text)  # the refused POST never ran
