"""Load: 1,000 sequential and 200 concurrent calls from a raw-socket UAC. Every call is answered
and ended by the server; afterwards nothing is left: no active call, no RTP port in use, and the
Calls list counts every call as completed."""

import threading
import time

import pytest

from conftest import CALLER, NUMBER
from sipuac import MediaSink, Uac

SEQUENTIAL = 1000
CONCURRENT = 200


def settle(dialtone, timeout=15.0) -> dict:
    """Metrics once active calls and RTP ports are back to 0 (or the last reading on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        m = dialtone.metrics()
        if m.get("dialtone_active_calls") == 0 and m.get("dialtone_rtp_ports_in_use") == 0:
            return m
        if time.monotonic() > deadline:
            return m
        time.sleep(0.2)


def assert_all_completed(twilio_client, expected: int) -> None:
    calls = twilio_client.calls.list(page_size=1000)
    assert len(calls) == expected, f"Calls.json lists {len(calls)} calls, {expected} were made"
    statuses = {}
    for c in calls:
        statuses[c.status] = statuses.get(c.status, 0) + 1
    assert statuses == {"completed": expected}, statuses


@pytest.mark.rtp_ports(1000)
def test_load_sequential(dialtone, webhook, provision, twilio_client):
    provision({"/voice": "<Response><Hangup/></Response>"})
    sink = MediaSink()
    failures = []
    t0 = time.monotonic()
    try:
        with Uac(dialtone.sip_addr, from_user=CALLER) as uac:
            for i in range(SEQUENTIAL):
                r = uac.call(NUMBER, sink.port, timeout=10)
                if not (r.answered and r.bye_from_server and r.error is None):
                    failures.append((i, r))
                    if len(failures) >= 10:
                        break
    finally:
        sink.close()
    elapsed = time.monotonic() - t0
    print(f"{SEQUENTIAL} sequential calls in {elapsed:.1f} s ({SEQUENTIAL / elapsed:.1f} calls/s)")
    assert not failures, f"{len(failures)} failed calls, first ones: {failures[:3]}"
    m = settle(dialtone)
    assert m.get("dialtone_active_calls") == 0, m
    assert m.get("dialtone_rtp_ports_in_use") == 0, m
    assert len(webhook.received("/voice")) == SEQUENTIAL
    assert_all_completed(twilio_client, SEQUENTIAL)


@pytest.mark.rtp_ports(1000)
def test_load_concurrent(dialtone, webhook, provision, twilio_client):
    provision({"/voice": '<Response><Pause length="1"/><Hangup/></Response>'})
    sink = MediaSink()
    results = [None] * CONCURRENT
    start = threading.Barrier(CONCURRENT)
    peak = {"active": 0, "ports": 0}
    done = threading.Event()

    def one(i):
        with Uac(dialtone.sip_addr, from_user=CALLER) as uac:
            start.wait(timeout=30)
            results[i] = uac.call(NUMBER, sink.port, timeout=40)

    def watch():
        while not done.is_set():
            try:
                m = dialtone.metrics()
                peak["active"] = max(peak["active"], m.get("dialtone_active_calls", 0))
                peak["ports"] = max(peak["ports"], m.get("dialtone_rtp_ports_in_use", 0))
            except Exception:  # noqa: BLE001 - a missed sample only lowers the peak
                pass
            time.sleep(0.1)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(CONCURRENT)]
    watcher = threading.Thread(target=watch)
    t0 = time.monotonic()
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    done.set()
    watcher.join()
    sink.close()
    elapsed = time.monotonic() - t0
    print(f"{CONCURRENT} concurrent calls in {elapsed:.1f} s; peak active {peak['active']}, "
          f"peak RTP ports {peak['ports']}")
    bad = [(i, r) for i, r in enumerate(results)
           if r is None or not (r.answered and r.bye_from_server and r.error is None)]
    assert not bad, f"{len(bad)} of {CONCURRENT} calls failed, first ones: {bad[:3]}"
    # They really overlapped: each lasts over 1 s, so most were up at once.
    assert peak["active"] >= CONCURRENT // 2, peak
    assert peak["ports"] >= CONCURRENT // 2, peak
    m = settle(dialtone)
    assert m.get("dialtone_active_calls") == 0, m
    assert m.get("dialtone_rtp_ports_in_use") == 0, m
    assert_all_completed(twilio_client, CONCURRENT)
