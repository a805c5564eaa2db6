"""Fixtures for the interop suite: a fresh `dialtone serve` per test, the customer's webhook app,
the official Twilio SDK pointed at the server, and real SIP peers.

Every test writes its files (server log, peer logs, recordings) to tests/out/<test name>/; a failing
test prints the tail of the server log in its report. A missing peer or binary is an error, never a
skip.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import audio  # noqa: E402
from server import DialtoneServer, Ports, find_binary  # noqa: E402
from webhook import Webhook, WebhookRequest  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "out"

# Every webhook request any test's app received, with the token it should be signed with; the
# signature test at the end of the session checks them all.
SIGNED_REQUESTS: list[tuple[str, WebhookRequest]] = []

CALLER = "+15557654321"
NUMBER = "+15550001111"


def pytest_configure(config):
    config.addinivalue_line("markers", "rtp_ports(n): size of the server's RTP port range (default 200)")
    config.addinivalue_line("markers", "dialtone_env(**env): extra environment variables for the server, "
                                       "e.g. DIALTONE_CONSOLE_CRM_URL")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(scope="session")
def ports() -> Ports:
    return Ports()


@pytest.fixture(scope="session")
def dialtone_binary() -> Path:
    return find_binary()


@pytest.fixture
def workdir(request) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    d = OUT / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


@pytest.fixture
def dialtone(request, dialtone_binary, workdir, ports):
    marker = request.node.get_closest_marker("rtp_ports")
    env = request.node.get_closest_marker("dialtone_env")
    server = DialtoneServer(dialtone_binary, workdir, ports, rtp_size=marker.args[0] if marker else 200,
                            extra_env=dict(env.kwargs) if env else None)
    server.start()
    yield server
    code = server.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"\n----- dialtone log tail ({server.log_path}) -----\n{server.log_tail(150)}\n-----")
    # A crash during the test is a failure of its own, even if the assertions passed.
    assert code == 0, f"dialtone exited with {code}:\n{server.log_tail(60)}"


@pytest.fixture
def webhook(dialtone):
    def remember(req: WebhookRequest) -> None:
        SIGNED_REQUESTS.append((dialtone.auth_token, req))

    hook = Webhook(on_request=remember)
    yield hook
    hook.close()


@pytest.fixture
def twilio_client(dialtone):
    from twilio.rest import Client

    client = Client(dialtone.account_sid, dialtone.auth_token)
    # twilio-python builds every URL of the api domain from Domain.base_url (absolute_url), page
    # links included, so this one attribute sends the whole Api domain to our server.
    client.api.base_url = dialtone.http_url
    return client


@pytest.fixture
def provision(twilio_client, webhook):
    """provision(path_twiml: dict[path, reply], number=NUMBER) -> IncomingPhoneNumber whose VoiceUrl
    is webhook /voice (the first path given)."""

    def make(routes: dict, number: str = NUMBER, method: str = "POST", **kw):
        first = None
        for path, reply in routes.items():
            url = webhook.route(path, reply)
            first = first or url
        return twilio_client.incoming_phone_numbers.create(
            phone_number=number, voice_url=first, voice_method=method, **kw)

    return make


@pytest.fixture(scope="session")
def audio_tools():
    audio.require_tools()
    return audio
