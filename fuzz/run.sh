#!/usr/bin/env bash
# Runs every fuzz target for a bounded time from a seed corpus (the RFC 4475 torture messages,
# hand-made TwiML, RTP/RTCP/telephone-event packets, WAVs and the media crate's MP3), prints one
# line per target with the runs executed, and exits non-zero if any target finds a crash.
#   fuzz/run.sh [seconds-per-target]     (default 20)
#   FUZZ_STORE=1 fuzz/run.sh ...         also builds and runs page_token (store::Cursor),
#                                        access_token and bulk_numbers (api), which need sqlx:
#                                        minutes more of build
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Works on stable Rust through
# RUSTC_BOOTSTRAP=1; sanitizers are off (-s none) because they need a nightly std.
# Logs go to fuzz/target/logs/, crashes to fuzz/artifacts/<target>/.
set -euo pipefail
secs="${1:-20}"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
export RUSTC_BOOTSTRAP=1
# The instrumented build has its own RUSTFLAGS: sharing a workspace target dir would make the two
# builds invalidate each other, so always use this project's own fuzz/target.
unset CARGO_TARGET_DIR

targets=(parse_message sdp stream_framer twiml rtp rtcp telephone_event decode_audio api_tokens digest_auth smpp_pdu smpp_text srtp webrtc_sdp billing_rates calling_window)
features=()
if [ "${FUZZ_STORE:-0}" = 1 ]; then
    targets+=(page_token access_token bulk_numbers)
    features=(--features store)
fi
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Digest: an answer to a challenge (MD5, qop=auth) and a carrier's SHA-256 challenge.
printf 'Digest username="alice", realm="dialtone", nonce="1a2b3c", uri="sip:127.0.0.1", response="0123456789abcdef0123456789abcdef", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"' > corpus/digest_auth/authorization.txt
printf 'Digest realm="carrier.example", nonce="5f2e", opaque="x", algorithm=SHA-256, qop="auth,auth-int", stale=FALSE' > corpus/digest_auth/challenge.txt

# --- Seeds ---------------------------------------------------------------------------------
# SIP: the RFC 4475 torture messages.
seeds="$here/../crates/sip/tests/rfc4475"
cp "$seeds"/*.dat corpus/parse_message/
cp "$seeds"/*.dat corpus/stream_framer/
# SDP seeds: the bodies of the torture messages that carry one, plus a few softphone offers.
for f in "$seeds"/*.dat; do
    python3 - "$f" corpus/sdp/"$(basename "$f" .dat)".sdp <<'PY' || true
import sys
data = open(sys.argv[1], 'rb').read()
i = data.find(b'\r\n\r\nv=0')
if i >= 0:
    open(sys.argv[2], 'wb').write(data[i + 4:])
PY
done
printf 'v=0\r\no=- 1 1 IN IP6 2001:db8::20\r\ns=-\r\nc=IN IP6 2001:db8::20\r\nt=0 0\r\nm=audio 10386 RTP/AVP 111 0 8 101\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=rtcp-mux\r\na=sendonly\r\nm=video 0 RTP/AVP 96\r\n' > corpus/sdp/baresip.sdp
printf 'v=0\r\no=- 3 3 IN IP4 192.168.1.20\r\ns=pjmedia\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8 120\r\nc=IN IP4 192.168.1.20\r\na=rtcp:4001 IN IP4 192.168.1.20\r\na=rtpmap:120 telephone-event/8000\r\na=ptime:20\r\n' > corpus/sdp/pjsua.sdp

# TwiML: every verb with its attributes, nesting, SSML, CDATA, entities, and an unsupported verb.
cat > corpus/twiml/all_verbs.xml <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment -->
<Response>
  <Say voice="alice" language="en-GB" loop="2">Hello &amp; welcome <![CDATA[<caller>]]></Say>
  <Play loop="0" digits="w1234#">https://example.com/hello.mp3</Play>
  <Pause length="3"/>
  <Gather input="dtmf speech" action="/gather" method="GET" timeout="5" finishOnKey="#"
          numDigits="4" speechTimeout="auto" actionOnEmptyResult="true">
    <Say>Enter your PIN<break time="1s"/><prosody rate="slow">now</prosody></Say>
    <Play>https://example.com/beep.wav</Play>
    <Pause length="1"/>
  </Gather>
  <Record action="/rec" method="POST" timeout="3" maxLength="60" finishOnKey="*"
          playBeep="false" trim="do-not-trim" recordingStatusCallback="/status"/>
  <Redirect method="GET">/next</Redirect>
  <Dial>+15551234567</Dial>
  <Hangup/>
</Response>
XML
printf '<Response><Reject reason="busy"/></Response>' > corpus/twiml/reject.xml
printf '<Response><Say>Goodbye</Say><Hangup/></Response>' > corpus/twiml/say.xml
printf '<Response/>' > corpus/twiml/empty.xml
# Rate tables: the number to rate, then prefix=price lines.
printf '+15550001234\n+1=0.013\n+1555=0.05\n=0.04\n' > corpus/billing_rates/table.txt
# Calling windows: hours, dates off, zones to decide in, then a prefix->zones table.
printf 'mon-fri 09:00-18:00; sat 10:00-13:00\n2026-12-25,2027-01-01\nEurope/Paris&America/New_York\n1|America/New_York\n33|Europe/Paris\n' > corpus/calling_window/window.txt

# RTP (RFC 3550): a PCMU packet; one with a CSRC, a header extension and padding; a
# telephone-event with the marker bit.
printf '\x80\x00\x12\x34\x00\x00\x01\x40\xde\xad\xbe\xef\xff\x7f\xff\x7f\xff\x7f\xff\x7f' > corpus/rtp/pcmu.bin
printf '\xb1\x08\x00\x01\x00\x00\x00\xa0\x01\x02\x03\x04\x0a\x0b\x0c\x0d\xbe\xde\x00\x01\x10\xff\x00\x00\xd5\xd5\xd5\x00\x00\x03' > corpus/rtp/csrc_ext_pad.bin
printf '\x80\xe5\x00\x02\x00\x00\x03\x20\x11\x22\x33\x44\x05\x0a\x00\xa0' > corpus/rtp/dtmf.bin

# RTCP: SR with one report block + SDES CNAME; RR + SDES + BYE with a reason; an APP packet.
printf '\x81\xc8\x00\x0c\x12\x34\x56\x78\xe0\x00\x00\x01\x80\x00\x00\x00\x00\x00\x1f\x40\x00\x00\x00\x32\x00\x00\x1f\x40\x0a\x0b\x0c\x0d\x40\xff\xff\xfe\x00\x01\x00\x05\x00\x00\x00\x20\x11\x22\x33\x44\x00\x00\x80\x00\x81\xca\x00\x03\x12\x34\x56\x78\x01\x02\x61\x62\x00\x00\x00\x00' > corpus/rtcp/sr_sdes.bin
printf '\x80\xc9\x00\x01\x12\x34\x56\x78\x81\xca\x00\x03\x12\x34\x56\x78\x01\x05\x61\x40\x62\x2e\x63\x00\x81\xcb\x00\x03\x12\x34\x56\x78\x04\x64\x6f\x6e\x65\x00\x00\x00' > corpus/rtcp/rr_sdes_bye.bin
printf '\x80\xc9\x00\x01\x12\x34\x56\x78\x80\xcc\x00\x02\x12\x34\x56\x78\x6e\x61\x6d\x65' > corpus/rtcp/rr_app.bin

# Telephone-events, in the target's own framing: per packet a control byte (0x80 marker,
# 0x40 second SSRC, low 3 bits payload length), a timestamp step byte (0 same, 1 = +160) and the
# payload. Digit 5 (start, update, three ends), then 1 and #, then a late packet of digit 5.
printf '\x84\x01\x05\x0a\x00\xa0\x04\x00\x05\x0a\x01\x40\x04\x00\x05\x8a\x03\x20\x04\x00\x05\x8a\x03\x20\x04\x00\x05\x8a\x03\x20\x84\x05\x01\x0a\x00\xa0\x04\x00\x01\x8a\x01\x40\x84\x05\x0b\x0a\x00\xa0\x04\xf6\x05\x0a\x00\xa0' > corpus/telephone_event/digits.bin

# Audio: small WAVs in the formats decode_audio handles, and MP3s. Seeds are kept to a few
# hundred milliseconds: decoding a whole 1 s file costs ~20 ms, which would cap the target at a
# few dozen runs a second. The media tests' MP3 is cut to its first frames (LAME header included).
head -c 2048 "$here/../crates/media/testdata/tone440_44k1_stereo_1s.mp3" > corpus/decode_audio/tone440_head.mp3
if command -v sox >/dev/null; then
    sox -n -r 8000 -c 1 -b 16 corpus/decode_audio/s16_8k.wav synth 0.05 sine 440
    sox -n -r 44100 -c 2 -b 24 corpus/decode_audio/s24_44k_stereo.wav synth 0.02 sine 1000
    sox -n -r 16000 -c 1 -e floating-point -b 32 corpus/decode_audio/f32_16k.wav synth 0.03 sine 300
    sox -n -r 8000 -c 1 -e mu-law corpus/decode_audio/ulaw.wav synth 0.05 sine 697 sine 1209
    sox -n -r 8000 -c 1 -e a-law corpus/decode_audio/alaw.wav synth 0.05 sine 440
    sox -n -r 11025 -c 1 -b 8 corpus/decode_audio/u8_11k.wav synth 0.03 square 200
    if command -v lame >/dev/null; then
        # MPEG-2.5 at 8 kHz mono and MPEG-2 at 22.05 kHz joint stereo: other decoder paths.
        sox -n -r 8000 -c 1 -b 16 "$tmp/m8k.wav" synth 0.1 sine 440
        lame --quiet -b 16 "$tmp/m8k.wav" corpus/decode_audio/mono_8k.mp3
        sox -n -r 22050 -c 2 -b 16 "$tmp/s22k.wav" synth 0.1 sine 440 sine 660
        lame --quiet -b 32 "$tmp/s22k.wav" corpus/decode_audio/stereo_22k.mp3
    fi
else
    python3 - corpus/decode_audio/s16_8k.wav <<'PY'
import math, struct, sys, wave
w = wave.open(sys.argv[1], 'wb')
w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
w.writeframes(b''.join(struct.pack('<h', int(8000 * math.sin(i / 3))) for i in range(400)))
w.close()
PY
fi

# REST strings: SIDs, status and direction values, page tokens.
printf 'CA0123456789abcdef0123456789abcdef' > corpus/api_tokens/call_sid
printf 'AC0123456789abcdef0123456789abcdef' > corpus/api_tokens/account_sid
printf 'in-progress' > corpus/api_tokens/status
printf 'outbound-api' > corpus/api_tokens/direction
if [ "${FUZZ_STORE:-0}" = 1 ]; then
    printf 'PT1700000000123456_CA0123456789abcdef0123456789abcdef' > corpus/page_token/call
    printf 'PT-5_PN1' > corpus/page_token/negative
    # A token as twilio-python makes it (signed with "secret"), and a bare alg=none one.
    printf 'eyJhbGciOiJIUzI1NiIsImN0eSI6InR3aWxpby1mcGE7dj0xIiwidHlwIjoiSldUIn0.eyJqdGkiOiJTSzAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmLTE3MDAwMDAwMDAiLCJncmFudHMiOnsiaWRlbnRpdHkiOiJhbGljZSIsInZvaWNlIjp7ImluY29taW5nIjp7ImFsbG93Ijp0cnVlfX19LCJpc3MiOiJTSzAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmIiwiZXhwIjoxNzAwMDAzNjAwLCJuYmYiOjE3MDAwMDAwMDAsInN1YiI6IkFDMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYifQ.c2lnbmF0dXJl' > corpus/access_token/twilio
    printf 'eyJhbGciOiJub25lIn0.e30.' > corpus/access_token/none
    printf '+14155550100\n{"PhoneNumber": "+14155550101", "VoiceUrl": "https://app.example/v"}\n{"Colour": 1}\n' > corpus/bulk_numbers/lines
fi

# SMPP (smpp_pdu's first octet sets the chunk size, the rest is the stream from the SMSC):
# bind_transceiver_resp, enquire_link, a submit_sm_resp, a delivery receipt as deliver_sm with
# receipted_message_id and message_state TLVs, a UDH part, unbind; and a bind_transceiver.
printf '\x05\x00\x00\x00\x15\x80\x00\x00\x09\x00\x00\x00\x00\x00\x00\x00\x01SMSC\x00\x00\x00\x00\x10\x00\x00\x00\x15\x00\x00\x00\x00\x00\x00\x00\x07\x00\x00\x00\x15\x80\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x02msg1\x00\x00\x00\x00\x10\x00\x00\x00\x06\x00\x00\x00\x00\x00\x00\x00\x08' > corpus/smpp_pdu/session.bin
printf '\x10\x00\x00\x00\xa7\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00\x03\x00\x01\x01447700900001\x00\x01\x01447700900000\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00`id:msg1 sub:001 dlvrd:001 submit date:2401010000 done date:2401010000 stat:DELIVRD err:000 text:\x00\x1e\x00\x05msg1\x00\x04\x27\x00\x01\x02' > corpus/smpp_pdu/receipt.bin
printf '\x03\x00\x00\x005\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00\x04\x00\x01\x011555\x00\x01\x011666\x00@\x00\x00\x00\x00\x00\x00\x08\x00\x0c\x05\x00\x03*\x02\x01\x04\x1f\x04@\x048' > corpus/smpp_pdu/udh_part.bin
printf '\x00\x00\x00\x00\x2f\x00\x00\x00\x09\x00\x00\x00\x00\x00\x00\x00\x01SMPP3TEST\x00secret08\x00SUBMIT1\x00\x34\x01\x01\x00' > corpus/smpp_pdu/bind_transceiver.bin
# srtp: first octet picks the profile; then an RTP packet (protected and opened) or junk.
printf '\x01\x80\x00\x12\x34\x00\x00\x01\x40\xde\xad\xbe\xef\xff\x7f\xff\x7f' > corpus/srtp/gcm.bin
printf '\x00\x90\x00\x00\x01\x00\x00\x00\xa0\x01\x02\x03\x04\xbe\xde\x00\x01\x10\xff\x00\x00\xd5\xd5' > corpus/srtp/cm_ext.bin
# webrtc_sdp: an offer as Chromium makes it (audio, BUNDLE, ICE, DTLS fingerprint, rtcp-mux).
printf 'v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\na=msid-semantic: WMS\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0 8 126\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=ice-options:trickle\r\na=fingerprint:sha-256 01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF\r\na=setup:actpass\r\na=mid:0\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=sendrecv\r\na=msid:- track\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:126 telephone-event/8000\r\na=ssrc:1001 cname:x\r\n' > corpus/webrtc_sdp/chromium.sdp
# smpp_text: first octet selects data_coding, fill bits and the concatenation; then the bytes.
printf '\x00id:0A1B sub:001 dlvrd:001 submit date:2401010000 done date:2401010005 stat:UNDELIV err:027 text:Hello' > corpus/smpp_text/receipt.txt
printf '\x08\x05\x00\x03\x07\x02\x01\x04\x1f\x04\x40\xd8\x3d\xde\x00' > corpus/smpp_text/udh_ucs2.bin
printf '\x00\x1b\x65\x1b\x3c\x1b\x3e\x00\x01\x02Hello\x1b' > corpus/smpp_text/gsm7.bin
printf '\x01\x07\x02\x01\x00\x03ab\x07\x02\x02\x05\x02cd\x09\x03\x01\x0f\x01x' > corpus/smpp_text/parts.bin

# --- Build once, then fuzz each target --------------------------------------------------------
start=$(date +%s)
cargo fuzz build -s none "${features[@]}"
echo "== build: $(( $(date +%s) - start ))s"

mkdir -p target/logs
status=0
summary=()
for target in "${targets[@]}"; do
    log="target/logs/$target.log"
    echo "== fuzzing $target for ${secs}s (log: fuzz/$log)"
    rc=0
    cargo fuzz run -s none "${features[@]}" "$target" "corpus/$target" -- \
        -max_total_time="$secs" -max_len=65536 -print_final_stats=1 >"$log" 2>&1 || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    corpus=$(ls "corpus/$target" | wc -l)
    if [ "$rc" -eq 0 ]; then
        line="ok     $target: ${runs:-?} runs in ${secs}s, corpus $corpus"
    else
        status=1
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        line="CRASH  $target: after ${runs:-?} runs; input ${artifact:-?}"
        # The panic location and message, or for a timeout or OOM libFuzzer's own report.
        grep -m 1 -A 2 "panicked at" "$log" || grep -m 1 -A 5 "==ERROR" "$log" || tail -n 20 "$log"
    fi
    echo "$line"
    summary+=("$line")
done
echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$status"
