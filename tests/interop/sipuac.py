"""A small SIP user agent client over raw sockets, for load and robustness tests.

It does what a plain UAC does for one call (RFC 3261): INVITE with an SDP offer, Timer A
retransmission over UDP, ACK for the final response (same branch for non-2xx, a new transaction
for 2xx and again for each 2xx retransmission), answers the far end's BYE with 200, or sends its own
BYE after `hold` seconds. It carries no media: the SDP points at a sink socket that only drains.
It also sends single raw messages (OPTIONS, malformed requests) and reads the answers.
"""

from __future__ import annotations

import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length",
           "c": "content-type", "k": "supported", "s": "subject", "e": "content-encoding"}

T1 = 0.5


@dataclass
class SipMessage:
    start: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def is_response(self) -> bool:
        return self.start.startswith("SIP/2.0 ")

    @property
    def status(self) -> int:
        return int(self.start.split(" ", 2)[1]) if self.is_response else 0

    @property
    def reason(self) -> str:
        parts = self.start.split(" ", 2)
        return parts[2] if self.is_response and len(parts) > 2 else ""

    @property
    def method(self) -> str:
        return "" if self.is_response else self.start.split(" ", 1)[0]

    def get(self, name: str) -> str | None:
        vals = self.get_all(name)
        return vals[0] if vals else None

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if COMPACT.get(k.lower(), k.lower()) == name]

    def cseq(self) -> tuple[int, str]:
        num, method = (self.get("cseq") or "0 X").split()
        return int(num), method


def parse(data: bytes) -> SipMessage | None:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("utf-8", errors="replace").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            k, v = headers[-1]
            headers[-1] = (k, v + " " + line.strip())
            continue
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    return SipMessage(lines[0], headers, body)


def tag_of(header: str | None) -> str | None:
    if not header:
        return None
    for p in header.split(";")[1:]:
        k, _, v = p.strip().partition("=")
        if k.lower() == "tag":
            return v
    return None


def branch() -> str:
    return "z9hG4bK" + uuid.uuid4().hex[:16]


@dataclass
class CallResult:
    call_id: str
    provisional: list[int] = field(default_factory=list)
    final_status: int | None = None
    final_reason: str = ""
    answered: bool = False
    bye_from_server: bool = False
    bye_sent: bool = False
    bye_status: int | None = None
    error: str | None = None
    setup_time: float | None = None
    total_time: float | None = None


class MediaSink:
    """One UDP socket that every SDP offer points at; it reads and discards what arrives so the
    server's RTP never meets a closed port."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.packets = 0
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                self.sock.recv(4096)
                self.packets += 1
            except socket.timeout:
                continue
            except OSError:
                return

    def close(self) -> None:
        self._stop = True
        self._t.join(timeout=1)
        self.sock.close()


def sdp_offer(rtp_port: int) -> bytes:
    sess = random.randint(1, 2**31)
    return (f"v=0\r\no=- {sess} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {rtp_port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
            f"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n").encode()


class Uac:
    """One UDP socket on 127.0.0.1 talking to one server address."""

    def __init__(self, server: tuple[str, int], from_user: str = "+15557654321"):
        self.server = server
        self.from_user = from_user
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Uac":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.server)

    def recv(self, timeout: float) -> SipMessage | None:
        """The next SIP message, or None after timeout. Non-SIP datagrams are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data, _ = self.sock.recvfrom(65535)
            except socket.timeout:
                return None
            msg = parse(data)
            if msg is not None:
                return msg

    def request(self, data: bytes, timeout: float = 3.0, retransmit: bool = True) -> SipMessage | None:
        """Sends a raw request (retransmitting per Timer E while nothing comes back) and returns the
        first final response, skipping provisional ones; None if none comes within timeout."""
        deadline = time.monotonic() + timeout
        interval = T1
        self.send(data)
        next_tx = time.monotonic() + interval
        got_provisional = False
        while time.monotonic() < deadline:
            wait = min(deadline, next_tx) - time.monotonic() if retransmit and not got_provisional \
                else deadline - time.monotonic()
            msg = self.recv(max(wait, 0.001))
            if msg is None:
                if retransmit and not got_provisional and time.monotonic() >= next_tx:
                    self.send(data)
                    interval = min(interval * 2, 4.0)
                    next_tx = time.monotonic() + interval
                continue
            if msg.is_response:
                if msg.status < 200:
                    got_provisional = True
                    continue
                return msg
        return None

    def options(self, timeout: float = 3.0) -> SipMessage | None:
        host, port = self.server
        req = (f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch()};rport\r\n"
               f"Max-Forwards: 70\r\n"
               f"From: <sip:probe@127.0.0.1:{self.port}>;tag={uuid.uuid4().hex[:8]}\r\n"
               f"To: <sip:{host}:{port}>\r\n"
               f"Call-ID: {uuid.uuid4().hex}@127.0.0.1\r\n"
               f"CSeq: 1 OPTIONS\r\n"
               f"Accept: application/sdp\r\n"
               f"Content-Length: 0\r\n\r\n").encode()
        return self.request(req, timeout)

    def call(self, number: str, media_port: int, hold: float | None = None,
             timeout: float = 15.0) -> CallResult:
        """One call to sip:number@server. With hold=None the UAC waits for the server's BYE;
        otherwise it sends BYE itself `hold` seconds after the ACK."""
        host, port = self.server
        call_id = f"{uuid.uuid4().hex}@127.0.0.1"
        res = CallResult(call_id=call_id)
        t0 = time.monotonic()
        deadline = t0 + timeout
        from_tag = uuid.uuid4().hex[:10]
        ruri = f"sip:{number}@{host}:{port}"
        inv_branch = branch()
        sdp = sdp_offer(media_port)
        from_hdr = f"<sip:{self.from_user}@127.0.0.1:{self.port}>;tag={from_tag}"
        to_hdr = f"<sip:{number}@{host}:{port}>"
        invite = (f"INVITE {ruri} SIP/2.0\r\n"
                  f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={inv_branch};rport\r\n"
                  f"Max-Forwards: 70\r\n"
                  f"From: {from_hdr}\r\n"
                  f"To: {to_hdr}\r\n"
                  f"Call-ID: {call_id}\r\n"
                  f"CSeq: 1 INVITE\r\n"
                  f"Contact: <sip:{self.from_user}@127.0.0.1:{self.port}>\r\n"
                  f"User-Agent: interop-sipuac\r\n"
                  f"Content-Type: application/sdp\r\n"
                  f"Content-Length: {len(sdp)}\r\n\r\n").encode() + sdp

        self.send(invite)
        interval, next_tx, proceeding = T1, time.monotonic() + T1, False
        final: SipMessage | None = None
        while final is None:
            now = time.monotonic()
            if now >= deadline:
                res.error = "no final response to INVITE"
                res.total_time = now - t0
                return res
            wait = (min(next_tx, deadline) if not proceeding else deadline) - now
            msg = self.recv(max(wait, 0.001))
            if msg is None:
                if not proceeding and time.monotonic() >= next_tx:
                    self.send(invite)
                    interval *= 2
                    next_tx = time.monotonic() + interval
                continue
            if msg.is_response and msg.get("call-id") == call_id and msg.cseq()[1] == "INVITE":
                if msg.status < 200:
                    proceeding = True
                    res.provisional.append(msg.status)
                else:
                    final = msg
            elif not msg.is_response:
                self._answer_request(msg, res)
        res.final_status, res.final_reason = final.status, final.reason
        res.setup_time = time.monotonic() - t0
        to_tagged = final.get("to") or to_hdr

        if final.status >= 300:
            # Non-2xx: the ACK belongs to the INVITE transaction (same branch).
            ack = (f"ACK {ruri} SIP/2.0\r\n"
                   f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={inv_branch};rport\r\n"
                   f"Max-Forwards: 70\r\nFrom: {from_hdr}\r\nTo: {to_tagged}\r\n"
                   f"Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n").encode()
            self.send(ack)
            res.total_time = time.monotonic() - t0
            return res

        res.answered = True
        target = ruri
        contact = final.get("contact")
        if contact and "<" in contact and ">" in contact:
            target = contact[contact.index("<") + 1: contact.index(">")]
        cseq = 1

        def ack_2xx() -> None:
            self.send((f"ACK {target} SIP/2.0\r\n"
                       f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch()};rport\r\n"
                       f"Max-Forwards: 70\r\nFrom: {from_hdr}\r\nTo: {to_tagged}\r\n"
                       f"Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n").encode())

        ack_2xx()
        bye_at = time.monotonic() + hold if hold is not None else None
        bye: bytes | None = None
        bye_next = 0.0
        bye_interval = T1
        while True:
            now = time.monotonic()
            if now >= deadline:
                res.error = "call did not end in time"
                break
            if bye_at is not None and bye is None and now >= bye_at:
                cseq += 1
                bye = (f"BYE {target} SIP/2.0\r\n"
                       f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch()};rport\r\n"
                       f"Max-Forwards: 70\r\nFrom: {from_hdr}\r\nTo: {to_tagged}\r\n"
                       f"Call-ID: {call_id}\r\nCSeq: {cseq} BYE\r\nContent-Length: 0\r\n\r\n").encode()
                self.send(bye)
                res.bye_sent = True
                bye_next = now + bye_interval
            if bye is not None and now >= bye_next:
                self.send(bye)
                bye_interval = min(bye_interval * 2, 4.0)
                bye_next = now + bye_interval
            wakeups = [deadline]
            if bye_at is not None and bye is None:
                wakeups.append(bye_at)
            if bye is not None:
                wakeups.append(bye_next)
            msg = self.recv(max(min(wakeups) - time.monotonic(), 0.001))
            if msg is None:
                continue
            if msg.is_response:
                num, method = msg.cseq()
                if method == "INVITE" and 200 <= msg.status < 300:
                    ack_2xx()  # our ACK was lost or crossed a retransmission
                elif method == "BYE" and msg.status >= 200:
                    res.bye_status = msg.status
                    break
                continue
            if msg.method == "BYE" and msg.get("call-id") == call_id:
                res.bye_from_server = True
                self._answer_request(msg, res)
                if bye is None:
                    break
            else:
                self._answer_request(msg, res)
        # A retransmitted BYE (our 200 lost) is answered by whichever call() or recv() runs next on
        # this socket: _answer_request answers any request it meets.
        res.total_time = time.monotonic() - t0
        return res

    def _answer_request(self, req: SipMessage, res: CallResult) -> None:
        if req.method == "ACK":
            return
        lines = [f"SIP/2.0 200 OK"]
        for name in ("via", "from", "to", "call-id", "cseq"):
            for v in req.get_all(name):
                lines.append(f"{name.title() if name != 'call-id' else 'Call-ID'}: {v}")
        lines.append("Content-Length: 0")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode())


def tcp_exchange(server: tuple[str, int], data: bytes, timeout: float = 3.0) -> list[SipMessage]:
    """Sends bytes on a fresh TCP connection and returns every complete message read back until a
    final response arrives, the peer closes, or timeout."""
    out: list[SipMessage] = []
    with socket.create_connection(server, timeout=timeout) as s:
        s.sendall(data)
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = s.recv(65535)
            except socket.timeout:
                break
            if not chunk:
                break
            buf += chunk
            while b"\r\n\r\n" in buf:
                head, _, rest = buf.partition(b"\r\n\r\n")
                msg = parse(head + b"\r\n\r\n")
                length = int(msg.get("content-length") or 0) if msg else 0
                if len(rest) < length:
                    break
                msg = parse(head + b"\r\n\r\n" + rest[:length])
                buf = rest[length:]
                if msg is not None:
                    out.append(msg)
            if any(m.is_response and m.status >= 200 for m in out):
                break
    return out
