"""Overload control with an independent generator (SIPp, Debian's sip-tester): a node whose
capacity is set low (DIALTONE_MAX_CALLS) is offered calls far beyond it for 10 s. Every INVITE
gets a final answer at once, 200 or 503 with Retry-After; every answered call completes with its
BYE answered; no call is left afterwards; the 503s are counted in /metrics; the process never
runs out of descriptors. The same with a webhook that answers slowly: fewer calls fit, nothing
collapses."""

from __future__ import annotations

import csv
import subprocess
import time
from pathlib import Path

import pytest

from conftest import NUMBER
from peers import PEERS

SCENARIO = PEERS / "sipp" / "uac_503.xml"
MAX_CALLS = 20
RATE = 100  # calls per second offered: about five times what 20 one-second calls allow
SECONDS = 10


def sipp(dialtone, workdir: Path, port: int) -> dict[str, int]:
    """Runs the scenario for SECONDS at RATE; returns the message counts by scenario line, and the
    answer times: `503_ms_<bucket>` (INVITE to 503) and `200_ms_<bucket>` (INVITE to 200)."""
    cmd = ["sipp", "-sf", str(SCENARIO), "-s", NUMBER, "-i", "127.0.0.1", "-p", str(port),
           "-r", str(RATE), "-m", str(RATE * SECONDS), "-l", "2000", "-timeout", "60s",
           "-recv_timeout", "10000", "-trace_counts", "-trace_stat", "-nostdin",
           f"127.0.0.1:{dialtone.sip_port}"]
    run = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=120)
    counts_file = next(workdir.glob("uac_503_*_counts.csv"), None)
    assert counts_file is not None, f"sipp wrote no counts (exit {run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    rows = list(csv.reader(counts_file.open(), delimiter=";"))
    header, last = rows[0], rows[-1]
    out = {name: int(value) for name, value in zip(header, last) if value.strip().lstrip("-").isdigit()}
    stat_file = next(workdir.glob("uac_503_*_.csv"))
    rows = list(csv.reader(stat_file.open(), delimiter=";"))
    for name, value in zip(rows[0], rows[-1]):
        for rtd, label in (("1", "503"), ("2", "200")):
            prefix = f"ResponseTimeRepartition{rtd}_"
            if name.startswith(prefix) and value.strip().isdigit():
                out[f"{label}_ms_{name[len(prefix):]}"] = int(value)
    return out


def run_overload(dialtone, webhook, provision, workdir, ports, twiml) -> tuple[dict, dict]:
    provision({"/voice": twiml})
    counts = sipp(dialtone, workdir, ports.port())
    deadline = time.monotonic() + 30
    while True:
        m = dialtone.metrics()
        if m.get("dialtone_active_calls") == 0 and m.get("dialtone_rtp_ports_in_use") == 0:
            break
        assert time.monotonic() < deadline, f"calls left after the load: {m}"
        time.sleep(0.3)
    assert "Too many open files" not in dialtone.log_path.read_text()
    return counts, m


def answers(counts: dict) -> tuple[int, int, int, int]:
    """(INVITEs sent, 200s to the INVITE, 503s, 200s to the BYE) from -trace_counts' columns."""
    def col(prefix: str, index: int) -> int:
        keys = [k for k in counts if k.startswith(f"{index}_") and k.endswith(prefix)]
        return counts[keys[0]] if keys else 0
    return col("_Sent", 0), col("_Recv", 5), col("_Recv", 4), col("_Recv", 9)


@pytest.mark.dialtone_env(DIALTONE_MAX_CALLS=str(MAX_CALLS))
@pytest.mark.rtp_ports(400)
def test_calls_beyond_capacity_are_refused_at_once_and_the_rest_complete(dialtone, webhook, provision, workdir, ports):
    counts, m = run_overload(dialtone, webhook, provision, workdir, ports, '<Response><Pause length="5"/></Response>')
    invites, answered, refused, byes = answers(counts)
    print(f"offered {invites}, answered {answered}, refused {refused}, BYEs answered {byes}; counts {counts}")
    assert invites == RATE * SECONDS, counts
    assert answered + refused == invites, f"INVITEs without a final answer: {counts}"
    assert byes == answered, f"answered calls whose BYE went unanswered: {counts}"
    # At once: every 503 and every 200 within a second of its INVITE.
    assert counts["503_ms_>=1000"] == 0 and counts["200_ms_>=1000"] == 0, counts
    assert sum(v for k, v in counts.items() if k.startswith("503_ms_")) == refused, counts
    # 20 calls of about 1 s at a time: roughly 20 a second over 10 s get in, the rest are refused.
    assert 100 <= answered <= 400, counts
    assert refused >= 500, counts
    assert m["dialtone_overload_refused_total"] == refused, m
    assert m["dialtone_call_capacity"] == MAX_CALLS, m
    assert len(webhook.received("/voice")) == answered


@pytest.mark.dialtone_env(DIALTONE_MAX_CALLS=str(MAX_CALLS))
@pytest.mark.rtp_ports(400)
def test_a_slow_webhook_lowers_capacity_without_collapse(dialtone, webhook, provision, workdir, ports):
    def slow(_req):
        time.sleep(2.0)
        return '<Response><Pause length="5"/></Response>'

    counts, m = run_overload(dialtone, webhook, provision, workdir, ports, slow)
    invites, answered, refused, byes = answers(counts)
    print(f"slow webhook: offered {invites}, answered {answered}, refused {refused}; counts {counts}")
    assert invites == RATE * SECONDS and answered + refused == invites and byes == answered, counts
    # The refusals are still immediate; the answers wait for the webhook.
    assert counts["503_ms_>=1000"] == 0, counts
    # Each call now holds its place for about 3 s: fewer get in than with a fast webhook.
    assert 30 <= answered <= 150, counts
    assert m["dialtone_overload_refused_total"] == refused, m


@pytest.mark.dialtone_env(DIALTONE_MAX_CALLS="5")
def test_api_calls_beyond_capacity_wait_queued_then_ring(dialtone, twilio_client, workdir, ports):
    """Calls created through the API are not refused at capacity: they wait in `queued` until
    a place frees, as for the calls-per-second limit, and then ring."""
    uas_port = ports.port()
    uas = subprocess.Popen(["sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", str(uas_port), "-m", "12",
                            "-timeout", "90s", "-nostdin", "-trace_counts"],
                           cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        calls = [twilio_client.calls.create(to=f"sip:uas@127.0.0.1:{uas_port}", from_="+15550001111",
                                            twiml='<Response><Pause length="2"/></Response>')
                 for _ in range(12)]
        peak, deadline = 0, time.monotonic() + 60
        while True:
            peak = max(peak, int(dialtone.metrics()["dialtone_active_calls"]))
            statuses = [twilio_client.calls(c.sid).fetch().status for c in calls]
            if all(s in ("completed", "failed", "busy", "no-answer", "canceled") for s in statuses):
                break
            assert time.monotonic() < deadline, statuses
            time.sleep(0.1)
        # Twelve 2 s calls created within about a second would overlap twelve deep.
        assert statuses == ["completed"] * 12, statuses
        assert 3 <= peak <= 5, peak
        assert dialtone.metrics()["dialtone_overload_refused_total"] == 0
    finally:
        uas.wait(timeout=30) if uas.poll() is None else None
        if uas.poll() is None:
            uas.kill()
