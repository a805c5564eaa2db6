"""Many concurrent inbound calls that stay up and send real audio: a raw-socket UAC for the crash
test. One SIP socket and one receiver thread serve every call (INVITE retransmitted per Timer A
until a response, ACK for each 2xx, 200 for any request the server sends); each answered call gets
its own RTP socket, and one sender thread sends a PCMU sine to every answered call every 20 ms with
real sequence numbers and timestamps. Nothing here ends a call: the test kills the server."""

from __future__ import annotations

import math
import random
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field

from sipuac import T1, branch, parse, sdp_offer

SAMPLE_RATE = 8000
FRAME = 160  # 20 ms


def ulaw(sample: int) -> int:
    """One 16-bit linear sample to G.711 mu-law (ITU-T G.711, with the usual bias)."""
    bias, clip = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    sample = min(abs(sample), clip) + bias
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not sample & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def sine_frames(freq: float = 440.0, amplitude: float = 0.3) -> list[bytes]:
    """One second of a sine as 50 PCMU frames (a whole number of periods, so it loops cleanly)."""
    pcm = [int(amplitude * 32767 * math.sin(2 * math.pi * freq * n / SAMPLE_RATE))
           for n in range(SAMPLE_RATE)]
    data = bytes(ulaw(s) for s in pcm)
    return [data[i:i + FRAME] for i in range(0, len(data), FRAME)]


@dataclass
class LiveCall:
    caller: str
    call_id: str
    from_tag: str
    invite: bytes
    rtp: socket.socket
    sent_at: float
    status: int | None = None
    answered_at: float | None = None
    remote_rtp: tuple[str, int] | None = None
    first_rtp: float | None = None
    last_rtp: float | None = None
    packets: int = 0
    seq: int = field(default_factory=lambda: random.randrange(1 << 16))
    ts: int = field(default_factory=lambda: random.randrange(1 << 32))
    ssrc: int = field(default_factory=lambda: random.randrange(1 << 32))


def sdp_audio_addr(body: bytes) -> tuple[str, int] | None:
    ip, port = None, None
    for line in body.decode(errors="replace").splitlines():
        if line.startswith("c=IN IP4 "):
            ip = line.split()[2]
        elif line.startswith("m=audio "):
            port = int(line.split()[1])
    return (ip, port) if ip and port else None


class LiveCalls:
    def __init__(self, server: tuple[str, int], number: str, caller_prefix: str = "+1555700"):
        """Call i comes from caller_prefix + i in four digits, so its record can be told apart."""
        self.server = server
        self.number = number
        self.caller_prefix = caller_prefix
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.bind(("127.0.0.1", 0))
        self.sip.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sip.settimeout(0.1)
        self.port = self.sip.getsockname()[1]
        self.calls: dict[str, LiveCall] = {}
        self.lock = threading.Lock()
        self.frames = sine_frames()
        self._stop = threading.Event()
        self._rtp_stop = threading.Event()
        self._rx = threading.Thread(target=self._receive, daemon=True)
        self._tx = threading.Thread(target=self._send_rtp, daemon=True)
        self._rx.start()
        self._tx.start()

    def place(self, count: int, timeout: float = 30.0) -> list[LiveCall]:
        """Places `count` calls and waits until each has a final response; returns them."""
        host, port = self.server
        base = len(self.calls)
        for i in range(count):
            caller = f"{self.caller_prefix}{base + i:04d}"
            rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rtp.bind(("127.0.0.1", 0))
            rtp.setblocking(False)
            call_id, tag = f"{uuid.uuid4().hex}@127.0.0.1", uuid.uuid4().hex[:10]
            sdp = sdp_offer(rtp.getsockname()[1])
            invite = (f"INVITE sip:{self.number}@{host}:{port} SIP/2.0\r\n"
                      f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch()};rport\r\n"
                      f"Max-Forwards: 70\r\n"
                      f"From: <sip:{caller}@127.0.0.1:{self.port}>;tag={tag}\r\n"
                      f"To: <sip:{self.number}@{host}:{port}>\r\n"
                      f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
                      f"Contact: <sip:{caller}@127.0.0.1:{self.port}>\r\n"
                      f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n").encode() + sdp
            call = LiveCall(caller, call_id, tag, invite, rtp, time.monotonic())
            with self.lock:
                self.calls[call_id] = call
            self.sip.sendto(invite, self.server)
            time.sleep(0.005)  # a steady arrival rate rather than one burst
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                pending = [c for c in self.calls.values() if c.status is None or c.status < 200]
            if not pending:
                break
            now = time.monotonic()
            for c in pending:
                if c.status is None and now - c.sent_at > T1:
                    c.sent_at = now
                    self.sip.sendto(c.invite, self.server)
            time.sleep(0.05)
        with self.lock:
            return list(self.calls.values())

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sip.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            msg = parse(data)
            if msg is None:
                continue
            if not msg.is_response:
                if msg.method != "ACK":
                    self._reply_200(msg)
                continue
            with self.lock:
                call = self.calls.get(msg.get("call-id") or "")
            if call is None or msg.cseq()[1] != "INVITE":
                continue
            if msg.status < 200:
                call.status = call.status or msg.status
                continue
            if 200 <= msg.status < 300:
                self._ack(call, msg)
                if call.answered_at is None:
                    call.remote_rtp = sdp_audio_addr(msg.body)
                    call.answered_at = time.monotonic()
            call.status = msg.status

    def _ack(self, call: LiveCall, ok) -> None:
        target = f"sip:{self.number}@{self.server[0]}:{self.server[1]}"
        contact = ok.get("contact")
        if contact and "<" in contact and ">" in contact:
            target = contact[contact.index("<") + 1: contact.index(">")]
        self.sip.sendto((f"ACK {target} SIP/2.0\r\n"
                         f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch()};rport\r\n"
                         f"Max-Forwards: 70\r\n"
                         f"From: <sip:{call.caller}@127.0.0.1:{self.port}>;tag={call.from_tag}\r\n"
                         f"To: {ok.get('to')}\r\nCall-ID: {call.call_id}\r\nCSeq: 1 ACK\r\n"
                         f"Content-Length: 0\r\n\r\n").encode(), self.server)

    def _reply_200(self, req) -> None:
        lines = ["SIP/2.0 200 OK"]
        for name, label in (("via", "Via"), ("from", "From"), ("to", "To"), ("call-id", "Call-ID"),
                            ("cseq", "CSeq")):
            for v in req.get_all(name):
                lines.append(f"{label}: {v}")
        lines.append("Content-Length: 0")
        self.sip.sendto(("\r\n".join(lines) + "\r\n\r\n").encode(), self.server)

    def _send_rtp(self) -> None:
        tick = time.monotonic()
        n = 0
        while not self._rtp_stop.is_set():
            with self.lock:
                live = [c for c in self.calls.values() if c.remote_rtp is not None]
            frame = self.frames[n % len(self.frames)]
            now = time.monotonic()
            for c in live:
                header = struct.pack("!BBHII", 0x80, 0x80 if c.packets == 0 else 0x00, c.seq, c.ts, c.ssrc)
                try:
                    c.rtp.sendto(header + frame, c.remote_rtp)
                except OSError:
                    continue
                c.seq = (c.seq + 1) & 0xFFFF
                c.ts = (c.ts + FRAME) & 0xFFFFFFFF
                c.packets += 1
                c.first_rtp = c.first_rtp or now
                c.last_rtp = now
                try:  # drain what the server sends, so nothing piles up
                    while c.rtp.recv(2048):
                        pass
                except (BlockingIOError, OSError):
                    pass
            n += 1
            tick += FRAME / SAMPLE_RATE
            delay = tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def stop_audio(self) -> float:
        """Stops sending RTP; returns when."""
        self._rtp_stop.set()
        self._tx.join(timeout=2)
        return time.monotonic()

    def close(self) -> None:
        self._rtp_stop.set()
        self._stop.set()
        self._tx.join(timeout=2)
        self._rx.join(timeout=2)
        self.sip.close()
        with self.lock:
            for c in self.calls.values():
                c.rtp.close()
