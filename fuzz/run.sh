#!/usr/bin/env bash
# Runs every fuzz target for a bounded time with a seed corpus built from the RFC 4475
# torture messages; exits non-zero if any target finds a crash.
#   fuzz/run.sh [seconds-per-target]     (default 20)
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Works on stable Rust through
# RUSTC_BOOTSTRAP=1; sanitizers are off (-s none) because they need a nightly std.
set -euo pipefail
secs="${1:-20}"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target}"

seeds="$here/../crates/sip/tests/rfc4475"
for target in parse_message sdp stream_framer; do
    mkdir -p "corpus/$target"
done
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

status=0
for target in parse_message sdp stream_framer; do
    echo "== fuzzing $target for ${secs}s"
    if ! cargo fuzz run -s none "$target" "corpus/$target" -- \
            -max_total_time="$secs" -max_len=65536 -print_final_stats=1; then
        echo "!! $target found a crash (see fuzz/artifacts/$target)"
        status=1
    fi
done
exit "$status"
