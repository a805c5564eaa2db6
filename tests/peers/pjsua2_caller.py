#!/usr/bin/env python3
"""A scriptable SIP user agent on pjsua2 (pjsip), run as its own process by the interop tests so that
a crash inside pjsip cannot take pytest down.

Caller mode (default): calls --uri, plays --play into the call once connected, records what it hears
to --record, sends RFC 4733 DTMF at given offsets after the call is confirmed, hangs up after
--duration seconds unless the far end hangs up first.
Callee mode (--listen): waits for one call, answers it, then the same.

SIP and RTP bind to 127.0.0.1 only. Audio uses pjsip's null device (no sound card): the conference
bridge runs at 8 kHz and connects player -> call and call -> recorder directly.

The last line on stdout is a JSON report; --result also writes it to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import pjsua2 as pj

KEEP_CODECS = ("PCMU/8000", "PCMA/8000", "telephone-event")


def parse_dtmf(spec: str) -> tuple[float, str]:
    at, _, digits = spec.partition(":")
    if not digits:
        raise argparse.ArgumentTypeError("--dtmf wants SECONDS:DIGITS, e.g. 3.0:427")
    return float(at), digits


class Report:
    def __init__(self) -> None:
        self.data: dict = {
            "connected": False,
            "states": [],
            "last_status": None,
            "last_reason": None,
            "confirmed_at": None,
            "disconnected_at": None,
            "hangup_by": None,
            "dtmf_sent": [],
            "dtmf_received": [],
            "media_active": False,
            "codec": None,
            "error": None,
        }
        self.t0 = time.monotonic()

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 3)


class UaCall(pj.Call):
    def __init__(self, acc, report: Report, args, call_id: int = pj.PJSUA_INVALID_ID):
        super().__init__(acc, call_id)
        self.report = report
        self.args = args
        self.player = None
        self.recorder = None
        self.confirmed = None  # monotonic time
        self.disconnected = False

    def onCallState(self, prm):
        ci = self.getInfo()
        r = self.report.data
        r["states"].append([self.report.now(), ci.stateText, ci.lastStatusCode])
        r["last_status"] = ci.lastStatusCode
        r["last_reason"] = ci.lastReason
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED and self.confirmed is None:
            self.confirmed = time.monotonic()
            r["connected"] = True
            r["confirmed_at"] = self.report.now()
        if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True
            r["disconnected_at"] = self.report.now()
            if r["hangup_by"] is None:
                r["hangup_by"] = "remote"

    def onCallMediaState(self, prm):
        ci = self.getInfo()
        for i, mi in enumerate(ci.media):
            if mi.type != pj.PJMEDIA_TYPE_AUDIO or mi.status != pj.PJSUA_CALL_MEDIA_ACTIVE:
                continue
            self.report.data["media_active"] = True
            try:
                si = self.getStreamInfo(i)
                self.report.data["codec"] = f"{si.codecName}/{si.codecClockRate}"
            except pj.Error:
                pass
            aud = self.getAudioMedia(i)
            if self.args.record and self.recorder is None:
                self.recorder = pj.AudioMediaRecorder()
                self.recorder.createRecorder(self.args.record)
                aud.startTransmit(self.recorder)
            if self.args.play and self.player is None:
                self.player = pj.AudioMediaPlayer()
                self.player.createPlayer(self.args.play, pj.PJMEDIA_FILE_NO_LOOP)
                self.player.startTransmit(aud)

    def onDtmfDigit(self, prm):
        self.report.data["dtmf_received"].append([self.report.now(), prm.digit])


class UaAccount(pj.Account):
    def __init__(self, report: Report, args):
        super().__init__()
        self.report = report
        self.args = args
        self.incoming: UaCall | None = None
        self.answer_at: float | None = None

    def onIncomingCall(self, prm):
        call = UaCall(self, self.report, self.args, prm.callId)
        self.incoming = call
        # Who the call shows as its caller (the From header), for caller-ID checks.
        self.report.data["remote_uri"] = call.getInfo().remoteUri
        op = pj.CallOpParam()
        if self.args.busy:
            op.statusCode = 486
        elif self.args.ring > 0:
            # 180 now, 200 from the main loop once --ring seconds have passed.
            op.statusCode = 180
            self.answer_at = time.monotonic() + self.args.ring
        else:
            op.statusCode = 200
        call.answer(op)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uri", help="Request-URI to call (caller mode)")
    ap.add_argument("--listen", action="store_true", help="wait for one incoming call instead")
    ap.add_argument("--busy", action="store_true", help="with --listen: refuse the call with 486")
    ap.add_argument("--ring", type=float, default=0.0,
                    help="with --listen: answer 180 and send the 200 this many seconds later")
    ap.add_argument("--user", default="+15557654321", help="user part of our From URI")
    ap.add_argument("--sip-port", type=int, default=0)
    ap.add_argument("--rtp-port", type=int, default=0, help="first RTP port (0: any)")
    ap.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    ap.add_argument("--play", help="WAV to play into the call")
    ap.add_argument("--record", help="WAV to record what we hear into")
    ap.add_argument("--dtmf", type=parse_dtmf, action="append", default=[],
                    help="SECONDS:DIGITS after the call is confirmed (repeatable)")
    ap.add_argument("--duration", type=float, default=10.0,
                    help="hang up this long after the call is confirmed")
    ap.add_argument("--timeout", type=float, default=30.0, help="give up after this long in all")
    ap.add_argument("--log", help="pjsip log file (level 5)")
    ap.add_argument("--result", help="also write the JSON report here")
    args = ap.parse_args()
    if not args.uri and not args.listen:
        ap.error("--uri or --listen")

    report = Report()
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    # One thread: every callback runs inside libHandleEvents below, in this Python thread.
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.uaConfig.userAgent = "interop-pjsua2"
    cfg.medConfig.clockRate = 8000
    cfg.medConfig.sndClockRate = 8000
    cfg.medConfig.noVad = True
    cfg.medConfig.ecTailLen = 0
    cfg.logConfig.consoleLevel = 0
    if args.log:
        cfg.logConfig.filename = args.log
        cfg.logConfig.level = 5
    else:
        cfg.logConfig.level = 0
    ep.libInit(cfg)

    tcfg = pj.TransportConfig()
    tcfg.boundAddress = "127.0.0.1"
    tcfg.publicAddress = "127.0.0.1"
    tcfg.port = args.sip_port
    ttype = pj.PJSIP_TRANSPORT_UDP if args.transport == "udp" else pj.PJSIP_TRANSPORT_TCP
    tid = ep.transportCreate(ttype, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    for c in ep.codecEnum2():
        if not c.codecId.startswith(KEEP_CODECS):
            ep.codecSetPriority(c.codecId, 0)

    tinfo = ep.transportGetInfo(tid)
    report.data["local_sip"] = tinfo.localName

    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:{args.user}@{tinfo.localName}"
    acfg.sipConfig.transportId = tid
    acfg.regConfig.registerOnAdd = False
    acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    acfg.mediaConfig.transportConfig.publicAddress = "127.0.0.1"
    acfg.mediaConfig.transportConfig.port = args.rtp_port
    acfg.natConfig.iceEnabled = False
    acfg.natConfig.sdpNatRewriteUse = False
    acfg.natConfig.contactRewriteUse = False
    acfg.natConfig.viaRewriteUse = False
    acc = UaAccount(report, args)
    acc.create(acfg)

    call: UaCall | None = None
    deadline = time.monotonic() + args.timeout
    pending = sorted(args.dtmf)
    try:
        if args.uri:
            call = UaCall(acc, report, args)
            op = pj.CallOpParam(True)
            call.makeCall(args.uri, op)
        hung_up = False
        while time.monotonic() < deadline:
            ep.libHandleEvents(10)
            if call is None and acc.incoming is not None:
                call = acc.incoming
            if call is None:
                continue
            if acc.answer_at is not None and time.monotonic() >= acc.answer_at and not call.disconnected:
                acc.answer_at = None
                op = pj.CallOpParam()
                op.statusCode = 200
                call.answer(op)
                report.data["answered_after_ring"] = args.ring
            if call.disconnected:
                break
            if call.confirmed is None:
                continue
            elapsed = time.monotonic() - call.confirmed
            while pending and elapsed >= pending[0][0]:
                _, digits = pending.pop(0)
                p = pj.CallSendDtmfParam()
                p.digits = digits
                p.method = pj.PJSUA_DTMF_METHOD_RFC2833
                try:
                    call.sendDtmf(p)
                    report.data["dtmf_sent"].append([report.now(), digits])
                except pj.Error as e:
                    report.data["error"] = f"sendDtmf: {e.info()}"
            if not hung_up and elapsed >= args.duration:
                hung_up = True
                report.data["hangup_by"] = "local"
                call.hangup(pj.CallOpParam())
        else:
            report.data["error"] = report.data["error"] or "timeout"
            if call is not None and not call.disconnected:
                report.data["hangup_by"] = report.data["hangup_by"] or "local-timeout"
                call.hangup(pj.CallOpParam())
        # Let the BYE/200 exchange and the recorder's last frames finish.
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            ep.libHandleEvents(10)
        if call is not None:
            # pjsip 2.15 queues conference-bridge port removal to its clock thread: keep polling
            # after dropping the recorder so the WAV is closed (and its header written) before exit.
            call.recorder = None  # destroys the recorder
            call.player = None
            end = time.monotonic() + 0.3
            while time.monotonic() < end:
                ep.libHandleEvents(10)
    except pj.Error as e:
        report.data["error"] = f"pjsua2: {e.info()}"
    out = json.dumps(report.data)
    if args.result:
        with open(args.result, "w") as f:
            f.write(out)
    print(out, flush=True)
    sys.stderr.flush()
    # libDestroy from Python has been seen to crash at exit; the report is out, skip it.
    os._exit(0 if report.data["error"] is None else 2)


if __name__ == "__main__":
    main()
