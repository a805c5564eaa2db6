"""Robustness against invalid SIP in the spirit of RFC 4475 section 3.1.2 (messages written for
this suite, addressed to the server under test): each gets the response the RFC expects, and the
server keeps answering OPTIONS afterwards. Plus the ordinary rejections: unknown method, unknown
number."""

import uuid

import pytest

from conftest import NUMBER
from sipuac import Uac, branch, tcp_exchange


def headers(uac_port: int, server_port: int, method: str = "INVITE", cseq: str | None = None,
            transport: str = "UDP", **override) -> dict:
    h = {
        "Via": f"SIP/2.0/{transport} 127.0.0.1:{uac_port};branch={branch()};rport",
        "Max-Forwards": "70",
        "From": f"<sip:+15557654321@127.0.0.1>;tag={uuid.uuid4().hex[:8]}",
        "To": f"<sip:{NUMBER}@127.0.0.1:{server_port}>",
        "Call-ID": f"{uuid.uuid4().hex}@127.0.0.1",
        "CSeq": cseq or f"1 {method}",
        "Contact": f"<sip:+15557654321@127.0.0.1:{uac_port}>",
    }
    h.update(override)
    return h


def build(start: str, h: dict, body: bytes = b"", content_length: str | None = None) -> bytes:
    lines = [start] + [f"{k}: {v}" for k, v in h.items()]
    lines.append(f"Content-Length: {content_length if content_length is not None else len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


SDP = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


def malformed(kind: str, uac_port: int, sp: int) -> bytes:
    ruri = f"sip:{NUMBER}@127.0.0.1:{sp}"
    if kind == "content-length-larger-than-message":  # RFC 4475 3.1.2.2
        h = headers(uac_port, sp, **{"Content-Type": "application/sdp"})
        return build(f"INVITE {ruri} SIP/2.0", h, SDP, content_length="9999")
    if kind == "negative-content-length":  # 3.1.2.3
        h = headers(uac_port, sp, **{"Content-Type": "application/sdp"})
        return build(f"INVITE {ruri} SIP/2.0", h, SDP, content_length="-999")
    if kind == "overlarge-scalars":  # 3.1.2.4
        h = headers(uac_port, sp, cseq="36893488147419103232 INVITE",
                    **{"Max-Forwards": "300", "Content-Type": "application/sdp"})
        return build(f"INVITE {ruri} SIP/2.0", h, SDP)
    if kind == "unterminated-quoted-display-name":  # 3.1.2.6
        h = headers(uac_port, sp, **{"From": '"Bell, Alexander <sip:a.g.bell@127.0.0.1>;tag=43',
                                      "Content-Type": "application/sdp"})
        return build(f"INVITE {ruri} SIP/2.0", h, SDP)
    if kind == "request-line-cseq-method-mismatch":  # 3.1.2.17
        h = headers(uac_port, sp, method="OPTIONS", cseq="1 INVITE")
        return build(f"OPTIONS {ruri} SIP/2.0", h)
    raise ValueError(kind)


CASES = ["content-length-larger-than-message", "negative-content-length", "overlarge-scalars",
         "unterminated-quoted-display-name", "request-line-cseq-method-mismatch"]


def assert_still_serving(dialtone):
    with Uac(dialtone.sip_addr) as uac:
        r = uac.options()
        assert r is not None and r.status == 200, f"OPTIONS after the bad input: {r}"
    assert dialtone.alive(), dialtone.log_tail(40)


@pytest.mark.parametrize("kind", CASES)
def test_malformed_udp_gets_400(dialtone, kind):
    with Uac(dialtone.sip_addr) as uac:
        data = malformed(kind, uac.port, dialtone.sip_port)
        r = uac.request(data, timeout=2.0)
        assert r is not None, f"no answer to {kind}"
        assert r.status == 400, f"{kind}: {r.start}"
    assert_still_serving(dialtone)


def test_malformed_tcp_gets_400(dialtone):
    sp = dialtone.sip_port
    h = headers(40000, sp, method="OPTIONS", cseq="1 INVITE", transport="TCP")
    data = build(f"OPTIONS sip:{NUMBER}@127.0.0.1:{sp} SIP/2.0", h)
    answers = tcp_exchange(dialtone.sip_addr, data)
    finals = [m for m in answers if m.is_response and m.status >= 200]
    assert finals and finals[0].status == 400, [m.start for m in answers]
    # And TCP still works for a good request.
    good = build(f"OPTIONS sip:127.0.0.1:{sp} SIP/2.0",
                 headers(40000, sp, method="OPTIONS", transport="TCP", To=f"<sip:127.0.0.1:{sp}>"))
    answers = tcp_exchange(dialtone.sip_addr, good)
    finals = [m for m in answers if m.is_response and m.status >= 200]
    assert finals and finals[0].status == 200, [m.start for m in answers]
    assert_still_serving(dialtone)


def test_many_malformed_in_a_row_then_options(dialtone):
    with Uac(dialtone.sip_addr) as uac:
        for kind in CASES * 4:
            uac.send(malformed(kind, uac.port, dialtone.sip_port))
        uac.send(b"\x00\xff garbage that is not SIP at all\r\n\r\n")
        uac.send(b"INVITE\r\n\r\n")
    assert_still_serving(dialtone)


def test_unknown_method(dialtone):
    with Uac(dialtone.sip_addr) as uac:
        sp = dialtone.sip_port
        data = build(f"FROBNICATE sip:{NUMBER}@127.0.0.1:{sp} SIP/2.0",
                     headers(uac.port, sp, method="FROBNICATE"))
        r = uac.request(data, timeout=2.0)
        assert r is not None and r.status in (501, 405), r and r.start


def test_invite_to_unknown_number_is_404(dialtone, webhook, provision):
    provision({"/voice": "<Response><Hangup/></Response>"})
    with Uac(dialtone.sip_addr) as uac:
        r = uac.call("+15559990000", 40000, timeout=5)
    assert r.final_status == 404, r
    assert not webhook.received(), "a call to an unknown number reached the app"


# RFC 3261 §8.2.2.1: a Request-URI scheme the UAS does not serve gets 416 (RFC 4475 3.1.1.10 and
# 3.1.1.11 are such messages: well-formed, refused); the schemes served pass, in any case.
SCHEMES = [
    ("nobodyKnowsThisScheme:totallyopaquecontent", 416),
    ("http://127.0.0.1/index.html", 416),
    ("urn:service:sos", 416),
    ("soap.beep://127.0.0.1:3002/", 416),
    ("sip:127.0.0.1:{sp}", 200),
    ("SIP:127.0.0.1:{sp}", 200),
    ("sips:127.0.0.1:{sp}", 200),
    ("tel:+15550001111", 200),
]


@pytest.mark.parametrize("uri,status", SCHEMES)
def test_request_uri_schemes(dialtone, uri, status):
    sp = dialtone.sip_port
    uri = uri.format(sp=sp)
    with Uac(dialtone.sip_addr) as uac:
        data = build(f"OPTIONS {uri} SIP/2.0",
                     headers(uac.port, sp, method="OPTIONS", To=f"<sip:127.0.0.1:{sp}>"))
        r = uac.request(data, timeout=2.0)
        assert r is not None, f"no answer to {uri}"
        assert r.status == status, f"{uri}: {r.start}"
    assert_still_serving(dialtone)


# RFC 3261 §25: header values are TEXT-UTF8 and LWS; a control character (other than HTAB) may
# appear only escaped as a quoted-pair in a quoted-string. Raw ones get 400; the neighbours that
# the grammar allows still get 200.
CONTROLS = [
    ("Subject", "a\x00b", 400),
    ("Subject", "ring\x07ring", 400),
    ("Subject", "del\x7fete", 400),
    ("From", '"Al\x01ce" <sip:+15557654321@127.0.0.1>;tag=ab12', 400),
    ("X-Note", "\x1b[31mred", 400),
    ("Subject", "tab\tinside", 200),
    ("Subject", "Grüße, 👋", 200),
    ("From", '"Al\\\x01ce" <sip:+15557654321@127.0.0.1>;tag=ab12', 200),
    ("From", '"quote \\" inside" <sip:+15557654321@127.0.0.1>;tag=ab12', 200),
]


@pytest.mark.parametrize("name,value,status", CONTROLS)
def test_control_characters_in_header_values(dialtone, name, value, status):
    sp = dialtone.sip_port
    with Uac(dialtone.sip_addr) as uac:
        h = headers(uac.port, sp, method="OPTIONS", To=f"<sip:127.0.0.1:{sp}>")
        h[name] = value
        r = uac.request(build(f"OPTIONS sip:127.0.0.1:{sp} SIP/2.0", h), timeout=2.0)
        assert r is not None, f"no answer to {name}: {value!r}"
        assert r.status == status, f"{name}: {value!r}: {r.start}"
    assert_still_serving(dialtone)
