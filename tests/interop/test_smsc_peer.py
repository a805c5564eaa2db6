"""The test SMSC itself (tests/smsc/smsc.js) against an independent SMPP client, python-smpplib:
bind, submit, receipt, deliveries through the control API, throttling, refusals, restarts. The
Dialtone-facing SMS tests build on this peer; this file only proves the peer."""

from __future__ import annotations

import socket

import pytest
import smpplib.client
import smpplib.consts

from smsc import Smsc

ESME_RTHROTTLED = 0x58
ESME_RINVDSTADR = 0x0B


class Esme:
    """A python-smpplib client bound as a transceiver, collecting what it is sent."""

    def __init__(self, port: int, system_id: str = "smoke"):
        self.client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
        self.resps: list = []
        self.delivered: list = []
        self.client.set_message_sent_handler(lambda pdu: self.resps.append(pdu))
        self.client.set_message_received_handler(lambda pdu: self.delivered.append(pdu))
        # Refusals are what some tests are after: keep them as responses, do not raise.
        self.client.set_error_pdu_handler(lambda pdu: None)
        self.client.connect()
        self.client.bind_transceiver(system_id=system_id, password="secret")

    def submit(self, to: str, text: bytes, data_coding: int = 0, esm_class: int = 0):
        return self.client.send_message(
            source_addr_ton=1, source_addr_npi=1, source_addr="15550001111",
            dest_addr_ton=1, dest_addr_npi=1, destination_addr=to.lstrip("+"),
            short_message=text, data_coding=data_coding, esm_class=esm_class, registered_delivery=1)

    def read_until(self, done, limit: int = 20):
        for _ in range(limit):
            if done():
                return
            try:
                self.client.read_once(auto_send_enquire_link=False)
            except socket.timeout:
                pass
        assert done(), f"responses {self.resps}, delivered {self.delivered}"

    def close(self):
        try:
            self.client.unbind()
        except Exception:  # the SMSC may be gone already
            pass
        self.client.disconnect()


@pytest.fixture
def smsc(workdir, ports):
    peer = Smsc(workdir, ports)
    yield peer
    peer.stop()


def test_submit_gets_an_id_and_a_receipt(smsc):
    esme = Esme(smsc.port)
    assert [b["system_id"] for b in smsc.binds()] == ["smoke"]
    esme.submit("+15550002222", b"hello from smpplib")
    esme.read_until(lambda: esme.resps and esme.delivered)
    resp = esme.resps[0]
    assert resp.status == 0
    message_id = resp.message_id.decode()
    receipt = esme.delivered[0]
    assert receipt.esm_class & 0x3C == 0x04
    text = receipt.short_message.decode()
    assert text.startswith(f"id:{message_id} sub:001 dlvrd:001 submit date:"), text
    assert "stat:DELIVRD err:000" in text
    assert receipt.source_addr.decode() == "15550002222"
    assert receipt.destination_addr.decode() == "15550001111"
    [sub] = smsc.submitted()
    assert (sub["source"], sub["dest"], sub["text"], sub["message_id"]) == (
        "+15550001111", "+15550002222", "hello from smpplib", message_id)
    assert sub["short_message"] == b"hello from smpplib".hex()
    assert sub["udh"] is None and sub["registered_delivery"] == 1
    # smpplib answered the receipt; the control API shows that answer.
    smsc.wait_for(lambda: [d for d in smsc.deliveries() if d["command_status"] == 0])
    esme.close()


def test_udh_parts_are_reported_parsed(smsc):
    esme = Esme(smsc.port)
    part = bytes([5, 0, 3, 0x2A, 2, 1]) + "Grüße ".encode("utf-16-be")
    esme.submit("+15550002222", part, data_coding=8, esm_class=0x40)
    esme.read_until(lambda: len(esme.resps) == 1)
    [sub] = smsc.submitted()
    assert sub["esm_class"] == 0x40 and sub["data_coding"] == 8
    assert sub["udh"]["concat"] == {"reference": 0x2A, "total": 2, "seq": 1}
    assert sub["text"] == "Grüße "
    esme.close()


def test_deliver_reaches_the_client_whole_and_in_parts(smsc):
    esme = Esme(smsc.port)
    smsc.deliver("+15557654321", "+15550001111", "hi there")
    smsc.deliver("+15557654321", "+15550001111", "ÅÄÖ ✓ unicode in three parts", parts=3)
    esme.read_until(lambda: len(esme.delivered) == 4)
    whole, *parts = esme.delivered
    assert (whole.source_addr.decode(), whole.destination_addr.decode()) == ("15557654321", "15550001111")
    assert whole.data_coding == 0 and whole.short_message == b"hi there"
    refs = set()
    joined = b""
    for i, p in enumerate(parts, start=1):
        assert p.esm_class & 0x40 and p.data_coding == 8
        udh, body = p.short_message[:6], p.short_message[6:]
        assert udh[:3] == bytes([5, 0, 3]) and udh[4:] == bytes([3, i])
        refs.add(udh[3])
        joined += body
    assert len(refs) == 1
    assert joined.decode("utf-16-be") == "ÅÄÖ ✓ unicode in three parts"
    smsc.wait_for(lambda: all(d["command_status"] == 0 for d in smsc.deliveries()))
    assert [d["kind"] for d in smsc.deliveries()] == ["message"] * 4
    esme.close()


def test_throttling_refusals_and_no_receipt(smsc):
    esme = Esme(smsc.port)
    smsc.behaviour(throttle_next=1, reject_prefix="+1555999", receipt="none")
    esme.submit("+15550002222", b"one")
    esme.submit("+15550002222", b"two")
    esme.submit("+15559990000", b"three")
    esme.read_until(lambda: len(esme.resps) == 3)
    assert [r.status for r in esme.resps] == [ESME_RTHROTTLED, 0, ESME_RINVDSTADR]
    assert [s["command_status"] for s in smsc.submitted()] == [ESME_RTHROTTLED, 0, ESME_RINVDSTADR]
    # The accepted one asked for a receipt, but receipts are off.
    esme.client._socket.settimeout(0.5)
    with pytest.raises(socket.timeout):
        esme.client.read_once(auto_send_enquire_link=False)
    assert esme.delivered == []
    smsc.reset()
    assert smsc.submitted() == []
    esme.close()


def test_stop_is_a_process_stop_and_start_reuses_the_port(smsc):
    esme = Esme(smsc.port)
    smsc.stop()
    with pytest.raises(Exception):
        esme.submit("+15550002222", b"into the void")
        esme.client.read_once()
    esme.client.disconnect()
    smsc.start()
    again = Esme(smsc.port, system_id="again")
    assert [b["system_id"] for b in smsc.binds()] == ["again"]
    again.close()
