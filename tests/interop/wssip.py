"""A small SIP-over-WebSocket registrar (RFC 7118) on 127.0.0.1, written from the RFCs for the
browser harness's own checks: it proves the browser SIP stacks reach a WebSocket server, speak SIP
with the `sip` subprotocol, answer digest challenges correctly and offer WebRTC media, without
Dialtone. It answers REGISTER and INVITE with a digest challenge (401 / 407, realm `dialtone`),
checks the answer against the password, then says 200 (REGISTER) or 486 (INVITE: it has no media).
Every message it gets is kept for the test.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import socket
import struct
import threading
from dataclasses import dataclass, field

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length",
           "c": "content-type"}


@dataclass
class SipMessage:
    first_line: str
    headers: list[tuple[str, str]]  # names lower-cased, compact forms expanded
    body: str

    @property
    def method(self) -> str | None:
        return None if self.first_line.startswith("SIP/2.0") else self.first_line.split(" ", 1)[0]

    @property
    def uri(self) -> str:
        return self.first_line.split(" ")[1]

    def get(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    @classmethod
    def parse(cls, text: str) -> "SipMessage":
        head, _, body = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        headers = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and headers:  # folded line
                headers[-1] = (headers[-1][0], headers[-1][1] + " " + line.strip())
                continue
            name, _, value = line.partition(":")
            name = name.strip().lower()
            headers.append((COMPACT.get(name, name), value.strip()))
        return cls(lines[0], headers, body)


def digest_params(value: str) -> dict[str, str]:
    value = re.sub(r"^\s*Digest\s+", "", value, flags=re.I)
    return {k.lower(): v1 if v1 else v2 for k, v1, v2 in
            re.findall(r'([A-Za-z0-9_-]+)\s*=\s*(?:"([^"]*)"|([^\s,]+))', value)}


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def digest_ok(p: dict[str, str], method: str, password: str) -> bool:
    ha1 = md5(f"{p.get('username')}:{p.get('realm')}:{password}")
    ha2 = md5(f"{method}:{p.get('uri')}")
    if p.get("qop"):
        want = md5(f"{ha1}:{p.get('nonce')}:{p.get('nc')}:{p.get('cnonce')}:{p.get('qop')}:{ha2}")
    else:
        want = md5(f"{ha1}:{p.get('nonce')}:{ha2}")
    return p.get("response") == want


@dataclass
class Connection:
    peer: str
    subprotocol: str | None
    request_line: str
    received: list[SipMessage] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)


class WsSipServer:
    def __init__(self, users: dict[str, str], realm: str = "dialtone"):
        self.users = users
        self.realm = realm
        self.nonces: set[str] = set()
        self.connections: list[Connection] = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/sip"
        self.closing = False
        self.threads: list[threading.Thread] = []
        self.clients: list[socket.socket] = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)

    def messages(self, method: str | None = None) -> list[SipMessage]:
        with self.lock:
            return [m for c in self.connections for m in c.received if method is None or m.method == method]

    def close(self) -> None:
        self.closing = True
        # shutdown() first: a bare close() leaves the accept() in the other thread holding the
        # listening socket, which then answers 101 to whoever gets its port next.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in list(self.clients):
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        for t in self.threads:
            t.join(timeout=5)
        alive = [t for t in self.threads if t.is_alive()]
        assert not alive, f"WsSipServer threads still running after close: {alive}"

    # WebSocket (RFC 6455): the opening handshake, then frames.
    def _accept(self) -> None:
        while not self.closing:
            try:
                client, addr = self.sock.accept()
            except OSError:
                return
            self.clients.append(client)
            t = threading.Thread(target=self._serve, args=(client, f"{addr[0]}:{addr[1]}"), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, client: socket.socket, peer: str) -> None:
        try:
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = client.recv(4096)
                if not chunk:
                    return
                buf += chunk
            head, _, rest = buf.partition(b"\r\n\r\n")
            lines = head.decode(errors="replace").split("\r\n")
            hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
            key = hdrs.get("sec-websocket-key", "")
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            offered = [p.strip() for p in hdrs.get("sec-websocket-protocol", "").split(",") if p.strip()]
            proto = "sip" if "sip" in offered else None
            conn = Connection(peer=peer, subprotocol=proto, request_line=lines[0])
            with self.lock:
                self.connections.append(conn)
            reply = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Accept: {accept}\r\n")
            if proto:
                reply += f"Sec-WebSocket-Protocol: {proto}\r\n"
            client.sendall((reply + "\r\n").encode())
            reader = _FrameReader(client, rest)
            while True:
                frame = reader.message()
                if frame is None:
                    return
                opcode, payload = frame
                if opcode == 8:
                    client.sendall(_frame(8, payload[:2]))
                    return
                if opcode == 9:
                    client.sendall(_frame(10, payload))
                    continue
                if opcode in (1, 2):
                    msg = SipMessage.parse(payload.decode(errors="replace"))
                    with self.lock:
                        conn.received.append(msg)
                    for out in self._handle(msg):
                        with self.lock:
                            conn.sent.append(out)
                        client.sendall(_frame(1, out.encode()))
        except OSError:
            return

    # SIP
    def _handle(self, msg: SipMessage) -> list[str]:
        method = msg.method
        if method is None or method in ("ACK", "BYE", "CANCEL"):
            return [self._response(msg, 200, "OK")] if method in ("BYE", "CANCEL") else []
        if method not in ("REGISTER", "INVITE"):
            return [self._response(msg, 405, "Method Not Allowed")]
        header = "authorization" if method == "REGISTER" else "proxy-authorization"
        creds = msg.get(header)
        if creds is None:
            nonce = secrets.token_hex(16)
            self.nonces.add(nonce)
            challenge = f'Digest realm="{self.realm}", nonce="{nonce}", algorithm=MD5, qop="auth"'
            if method == "REGISTER":
                return [self._response(msg, 401, "Unauthorized", [("WWW-Authenticate", challenge)])]
            return [self._response(msg, 407, "Proxy Authentication Required", [("Proxy-Authenticate", challenge)])]
        p = digest_params(creds)
        password = self.users.get(p.get("username", ""))
        if p.get("nonce") not in self.nonces or password is None or not digest_ok(p, method, password):
            return [self._response(msg, 403, "Forbidden")]
        if method == "REGISTER":
            contact = msg.get("contact") or ""
            return [self._response(msg, 200, "OK", [("Contact", contact), ("Expires", "300")])]
        return [self._response(msg, 100, "Trying"), self._response(msg, 486, "Busy Here")]

    def _response(self, req: SipMessage, code: int, reason: str, extra: list[tuple[str, str]] = ()) -> str:
        lines = [f"SIP/2.0 {code} {reason}"]
        lines += [f"Via: {v}" for v in req.all("via")]
        to = req.get("to") or ""
        if code > 100 and ";tag=" not in to:
            to += ";tag=" + secrets.token_hex(4)
        lines += [f"From: {req.get('from')}", f"To: {to}", f"Call-ID: {req.get('call-id')}",
                  f"CSeq: {req.get('cseq')}"]
        lines += [f"{k}: {v}" for k, v in extra]
        lines += ["Content-Length: 0", "", ""]
        return "\r\n".join(lines)


def _frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


class _FrameReader:
    def __init__(self, sock: socket.socket, buf: bytes):
        self.sock = sock
        self.buf = buf

    def _need(self, n: int) -> bytes | None:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def message(self) -> tuple[int, bytes] | None:
        """The next whole message (continuation frames joined): (opcode, payload)."""
        parts, first_op = [], None
        while True:
            head = self._need(2)
            if head is None:
                return None
            fin, op = head[0] & 0x80, head[0] & 0x0F
            masked, n = head[1] & 0x80, head[1] & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._need(2) or b"\0\0")[0]
            elif n == 127:
                n = struct.unpack("!Q", self._need(8) or b"\0" * 8)[0]
            mask = self._need(4) if masked else b"\0\0\0\0"
            data = self._need(n) if n else b""
            if mask is None or data is None:
                return None
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            if op >= 8:  # control frames may come between fragments
                return op, data
            if first_op is None:
                first_op = op
            parts.append(data)
            if fin:
                return first_op, b"".join(parts)
