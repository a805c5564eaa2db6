#!/usr/bin/env bash
# Runs every benchmark in bench/ in turn; each prints its own summary and a *_RESULT line.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
status=0
for b in cps.sh relay.sh webrtc.sh conference.sh api.sh sms.sh; do
    echo "== $b"
    "$HERE/$b" "$@" || status=1
done
exit $status
