#!/usr/bin/env bash
# Installs the real SIP peers and audio tools the interop suite (tests/interop) drives, a Python
# venv at tests/.venv with the suite's Python packages, and the Node packages of the SDK scenarios
# and the browser peers (Debian's Chromium driven by playwright-core), and Jasmin (the SMS gateway)
# in its own venv tests/.jasmin-venv with Debian's redis-server and rabbitmq-server. Idempotent: a
# second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(baresip espeak-ng sox libsox-fmt-all kamailio sip-tester sipvicious lame postgresql
              chromium chromium-driver rabbitmq-server redis-server)

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
        SUDO="sudo"
    fi
    echo "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update -q
    # kamailio's, postgresql's, rabbitmq-server's and redis-server's postinst would start system
    # services (5060, 5432, 5672, 6379) that the tests never want: tests start their own servers on
    # free loopback ports.
    $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
    for svc in kamailio postgresql rabbitmq-server redis-server; do
        if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
            $SUDO systemctl stop "$svc" || true
        fi
    done
fi

PY="${PYTHON:-python3}"
VENV=tests/.venv
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
# requirements.txt pins what the suite was written against; pip is quick when all are present.
if ! "$VENV/bin/python" -c 'import pjsua2, twilio, pytest, requests, smpplib' 2>/dev/null \
   || ! cmp -s tests/requirements.txt "$VENV/.installed-requirements"; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r tests/requirements.txt
    cp tests/requirements.txt "$VENV/.installed-requirements"
fi
"$VENV/bin/python" -c 'import pjsua2, twilio, pytest, requests; print("python peers ok: twilio", twilio.__version__)'

# The official twilio Node SDK for tests/interop/test_sdk_scenarios.py, pinned by
# tests/sdk-node/package-lock.json; `npm ci` only when the lock file changed since the last install.
command -v node >/dev/null && command -v npm >/dev/null \
    || { echo "node and npm are needed for the Node SDK scenarios (apt-get install nodejs npm)" >&2; exit 1; }
if [ ! -d tests/sdk-node/node_modules/twilio ] \
   || ! cmp -s tests/sdk-node/package-lock.json tests/sdk-node/node_modules/.installed-package-lock.json; then
    (cd tests/sdk-node && npm ci --no-audit --no-fund --loglevel=error)
    cp tests/sdk-node/package-lock.json tests/sdk-node/node_modules/.installed-package-lock.json
fi
(cd tests/sdk-node && node -e 'console.log("node peers ok: twilio", require("twilio/package.json").version)')

# The test SMSC (tests/smsc/smsc.js): the npm `smpp` package in server mode, pinned by its lock.
if [ ! -d tests/smsc/node_modules/smpp ] \
   || ! cmp -s tests/smsc/package-lock.json tests/smsc/node_modules/.installed-package-lock.json; then
    (cd tests/smsc && npm ci --no-audit --no-fund --loglevel=error)
    cp tests/smsc/package-lock.json tests/smsc/node_modules/.installed-package-lock.json
fi
(cd tests/smsc && node -e 'console.log("smsc peer ok: smpp", require("smpp/package.json").version)')

# The browser peers (tests/browser): playwright-core drives Debian's /usr/bin/chromium (never a
# browser build of playwright's own), SIP.js and JsSIP are bundled for the test pages by esbuild.
if [ ! -d tests/browser/node_modules/playwright-core ] \
   || ! cmp -s tests/browser/package-lock.json tests/browser/node_modules/.installed-package-lock.json; then
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
    cp tests/browser/package-lock.json tests/browser/node_modules/.installed-package-lock.json
fi
(cd tests/browser && node -e '
  const v = (p) => JSON.parse(require("fs").readFileSync(`node_modules/${p}/package.json`)).version;
  console.log("browser peers ok: playwright-core", v("playwright-core"), "sip.js", v("sip.js"),
              "jssip", v("jssip"), "esbuild", v("esbuild"));')
/usr/bin/chromium --version 2>/dev/null | grep -q Chromium \
    || { echo "/usr/bin/chromium does not run" >&2; exit 1; }

# Jasmin (tests/interop/jasmin.py) in its own venv, pinned by tests/jasmin-requirements.txt. Two
# things its 0.11.1 wheel gets wrong are handled here rather than in /etc: it ships no AMQP spec
# (jasmin.py points [amqp-broker] spec at txamqp's amqp0-9-1.stripped.xml inside this venv), and
# its submit_sm_resp handler reads `_pdu.response` from the request PDU, so no DLR map is ever
# stored and no receipt reaches an SMPP user (jookies/jasmin#1236): the two lines are changed to
# `r.response`, the transaction's response, as later Jasmin source has it.
JVENV=tests/.jasmin-venv
if [ ! -x "$JVENV/bin/python" ]; then
    "$PY" -m venv "$JVENV"
fi
if ! cmp -s tests/jasmin-requirements.txt "$JVENV/.installed-requirements"; then
    "$JVENV/bin/python" -m pip install -q --disable-pip-version-check -r tests/jasmin-requirements.txt
    cp tests/jasmin-requirements.txt "$JVENV/.installed-requirements"
fi
listeners=$("$JVENV/bin/python" -c 'import jasmin.managers.listeners as m; print(m.__file__)')
if grep -q '_pdu\.response\.' "$listeners"; then
    sed -i 's/_pdu\.response\./r.response./g' "$listeners"
    rm -rf "$(dirname "$listeners")/__pycache__"
fi
ls "$JVENV"/lib/python3*/site-packages/txamqp/specs/standard/amqp0-9-1.stripped.xml >/dev/null \
    || { echo "txamqp's AMQP spec is missing from $JVENV" >&2; exit 1; }
"$JVENV/bin/python" -c 'import jasmin, twisted; print("jasmin peer ok: jasmin", jasmin.get_release(), "twisted", twisted.__version__)'
command -v redis-server >/dev/null && [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] && command -v epmd >/dev/null \
    || { echo "redis-server, rabbitmq-server or epmd is missing" >&2; exit 1; }
