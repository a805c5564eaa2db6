"""Numbers at scale, the classifieds case: 100,000 numbers created through the API (most through
`IncomingPhoneNumbers/Bulk.json`, the rest by concurrent single creates), each forwarding to its own
seller (its VoiceUrl names the seller; the webhook answers `<Dial><Sip>sip:seller-N@...`). SIPp
places random calls to those numbers; a loopback UAS checks that every call reached the seller of
the number dialled (the forwarded INVITE's Request-URI user against its From, which carries the
dialled number as the caller ID). Then numbers are deleted and calls to them get 404 at once, while
the others still route."""

import json
import random
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from server import require

TOTAL = 100_000
SINGLE = 5_000            # created one request each; the rest through Bulk.json
BULK_LINES = 9_500
CALLS = 300
DELETED = 50


def number(i: int) -> str:
    return f"+1555{i:07d}"


# The INVITE both scenarios send: to the number in field 0 of the CSV, with a PCMU offer.
INVITE_SEND = """  <send retrans="500">
    <![CDATA[
      INVITE sip:[field0]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field0]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:caller@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>
"""

UAC_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="call a number: answered, the forward fails, the server hangs up">
""" + INVITE_SEND + """  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true"/>
  <send>
    <![CDATA[
      ACK sip:[field0]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field0]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:caller@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv request="BYE"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""

UAC_404_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="call a deleted number: 404">
""" + INVITE_SEND + """  <recv response="100" optional="true"/>
  <recv response="404"/>
  <send>
    <![CDATA[
      ACK sip:[field0]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-3]
      From: <sip:[field0]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field0]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""


class Sellers:
    """A loopback UAS for every seller: records (Request-URI user, From user) of each new INVITE
    and answers 486 Busy Here, so the forward ends and the server hangs up the caller."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.reached: dict[str, tuple[str, str]] = {}  # Call-ID -> (R-URI user, From user)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    @staticmethod
    def user(uri: str) -> str:
        uri = uri.split("<", 1)[-1]
        return uri.split(":", 1)[1].split("@", 1)[0] if ":" in uri else ""

    def run(self):
        while not self.stopping.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            lines = data.decode("utf-8", "replace").split("\r\n")
            start = lines[0].split()
            if len(start) < 3 or start[0] != "INVITE":
                continue  # ACKs of our 486, anything else: nothing to answer
            headers = {}
            kept = []
            for line in lines[1:]:
                if not line:
                    break
                name, _, value = line.partition(":")
                name = name.strip().lower()
                headers.setdefault(name, value.strip())
                if name in ("via", "v", "from", "f", "call-id", "i", "cseq"):
                    kept.append(line)
                if name in ("to", "t"):
                    kept.append(line if ";tag=" in line else line + ";tag=seller")
            call_id = headers.get("call-id") or headers.get("i") or ""
            with self.lock:
                self.reached.setdefault(call_id, (self.user(start[1]), self.user(headers.get("from") or headers.get("f") or "")))
            reply = "SIP/2.0 486 Busy Here\r\n" + "\r\n".join(kept) + "\r\nContent-Length: 0\r\n\r\n"
            self.sock.sendto(reply.encode(), peer)

    def calls(self) -> list[tuple[str, str]]:
        with self.lock:
            return list(self.reached.values())

    def close(self):
        self.stopping.set()
        self.thread.join(timeout=2)
        self.sock.close()


def run_sipp(workdir, dialtone, port: int, scenario: str, name: str, numbers: list[str], rate: int, limit: int):
    """SIPp calls each of `numbers` once, in order; returns (exit code, successful, failed)."""
    sipp = require("sipp")
    xml = workdir / f"{name}.xml"
    xml.write_text(scenario)
    csv = workdir / f"{name}.csv"
    csv.write_text("SEQUENTIAL\n" + "".join(f"{n};\n" for n in numbers))
    stats = workdir / f"{name}_stats.csv"
    cmd = [sipp, f"{dialtone.sip_addr[0]}:{dialtone.sip_addr[1]}", "-sf", str(xml), "-inf", str(csv),
           "-i", "127.0.0.1", "-p", str(port), "-m", str(len(numbers)), "-r", str(rate), "-l", str(limit),
           "-nostdin", "-timeout", "120s", "-timeout_error", "-recv_timeout", "20000",
           "-trace_err", "-error_file", str(workdir / f"{name}_errors.log"),
           "-trace_stat", "-stf", str(stats)]
    proc = subprocess.run(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=180)
    (workdir / f"{name}.out").write_bytes(proc.stdout)
    rows = stats.read_text().splitlines()
    head = rows[0].split(";")
    last = rows[-1].split(";")
    ok = int(last[head.index("SuccessfulCall(C)")])
    failed = int(last[head.index("FailedCall(C)")])
    return proc.returncode, ok, failed


def test_classifieds_100k_numbers_route_to_their_sellers(dialtone, webhook, workdir, ports):
    sellers = Sellers()
    sipp_port = ports.port()
    try:
        _run(dialtone, webhook, workdir, sellers, sipp_port)
    finally:
        sellers.close()
        ports.release(sipp_port)


def _run(dialtone, webhook, workdir, sellers, sipp_port):
    forward = lambda req: (
        '<Response><Dial><Sip>sip:seller-%s@127.0.0.1:%d</Sip></Dial></Response>'
        % (req.query.get("seller", "none"), sellers.port))
    voice = webhook.route("/voice", forward)
    auth = (dialtone.account_sid, dialtone.auth_token)
    base = dialtone.api("/IncomingPhoneNumbers")

    # Bulk: JSON lines, each number with its own seller's URL; POST by default.
    t0 = time.monotonic()
    session = requests.Session()
    created = 0
    for start in range(SINGLE, TOTAL, BULK_LINES):
        end = min(start + BULK_LINES, TOTAL)
        body = "".join(json.dumps({"PhoneNumber": number(i), "VoiceUrl": f"{voice}?seller={i}"}) + "\n"
                       for i in range(start, end))
        r = session.post(f"{base}/Bulk.json", data=body.encode(), auth=auth, timeout=120,
                         headers={"Content-Type": "application/x-ndjson"})
        assert r.status_code == 200, r.text[:500]
        out = r.json()
        assert (out["created"], out["failed"], out["errors"]) == (end - start, 0, []), str(out)[:500]
        created += out["created"]
    bulk_s = time.monotonic() - t0

    # Singles, many clients at once.
    local = threading.local()

    def create(i: int) -> int:
        s = getattr(local, "s", None) or requests.Session()
        local.s = s
        r = s.post(f"{base}.json", auth=auth, timeout=60,
                   data={"PhoneNumber": number(i), "VoiceUrl": f"{voice}?seller={i}"})
        return r.status_code

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(create, range(SINGLE)))
    single_s = time.monotonic() - t0
    assert statuses.count(201) == SINGLE, {s: statuses.count(s) for s in set(statuses)}
    created += SINGLE
    print(f"created {TOTAL - SINGLE} numbers in bulk in {bulk_s:.1f} s ({(TOTAL - SINGLE) / bulk_s:.0f}/s), "
          f"{SINGLE} single creates in {single_s:.1f} s ({SINGLE / single_s:.0f}/s)")
    assert created == TOTAL
    # A duplicate in a later bulk request is reported, not added twice.
    r = session.post(f"{base}/Bulk.json", data=f"{number(7)}\n+15559999999\n", auth=auth, timeout=30,
                     headers={"Content-Type": "text/plain"})
    assert r.json()["created"] == 1 and r.json()["errors"][0]["code"] == 21422, r.text
    # The list pages by key through all of them quickly.
    t0 = time.monotonic()
    page = dialtone.get(f"{base}.json?PageSize=1000").json()
    page2 = dialtone.get(page["next_page_uri"]).json()
    assert len(page["incoming_phone_numbers"]) == 1000 and len(page2["incoming_phone_numbers"]) == 1000
    assert not {n["sid"] for n in page["incoming_phone_numbers"]} & {n["sid"] for n in page2["incoming_phone_numbers"]}
    print(f"two list pages of 1000 in {time.monotonic() - t0:.2f} s")

    # Random calls, from both kinds of creation; each must reach the seller of its number.
    rng = random.Random(12)
    called = rng.sample(range(TOTAL), CALLS)
    code, ok, failed = run_sipp(workdir, dialtone, sipp_port, UAC_XML, "calls", [number(i) for i in called], 50, 40)
    assert (code, ok, failed) == (0, CALLS, 0), (code, ok, failed, (workdir / "calls.out").read_text()[-2000:])
    reached = sellers.calls()
    assert len(reached) == CALLS, f"{len(reached)} forwards reached the sellers"
    wrong = [(user, caller) for user, caller in reached
             if user != f"seller-{int(caller[len('+1555'):])}" ]
    assert not wrong, f"calls that reached the wrong seller: {wrong[:5]}"
    assert sorted(int(c[len("+1555"):]) for _, c in reached) == sorted(called)

    # Deleted numbers stop routing at once: the 404s follow the 204s with no pause.
    gone = rng.sample([i for i in range(TOTAL) if i not in set(called)], DELETED)
    sids = {}
    for i in gone:
        found = dialtone.get(f"{base}.json?PhoneNumber={number(i).replace('+', '%2B')}").json()
        sids[i] = found["incoming_phone_numbers"][0]["sid"]
    for i in gone:
        r = session.delete(f"{base}/{sids[i]}.json", auth=auth, timeout=30)
        assert r.status_code == 204, r.text
    hooks_before = len(webhook.received("/voice"))
    code, ok, failed = run_sipp(workdir, dialtone, sipp_port, UAC_404_XML, "deleted", [number(i) for i in gone], 50, 20)
    assert (code, ok, failed) == (0, DELETED, 0), (code, ok, failed, (workdir / "deleted.out").read_text()[-2000:])
    assert len(webhook.received("/voice")) == hooks_before, "a deleted number's webhook was called"

    # The rest still route, to the right seller.
    again = rng.sample([i for i in range(TOTAL) if i not in set(gone)], 100)
    before = len(sellers.calls())
    code, ok, failed = run_sipp(workdir, dialtone, sipp_port, UAC_XML, "after", [number(i) for i in again], 50, 40)
    assert (code, ok, failed) == (0, 100, 0), (code, ok, failed)
    reached = sellers.calls()[before:]
    assert len(reached) == 100
    assert all(user == f"seller-{int(caller[len('+1555'):])}" for user, caller in reached), reached[:5]
