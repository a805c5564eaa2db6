// The independent SMPP client of the SMS benchmark (sms.sh): the npm package `smpp` (0.5.1,
// tests/smsc's dependency, nothing of Dialtone's), as an ESME pushing submit_sm straight into
// an SMSC as fast as it can, and acknowledging the delivery receipts that come back.
//
//   node smppclient.js --port N [--binds 4] [--window 64] [--duration 10] [--destinations 10000]
//
// Each of `binds` transceiver connections keeps `window` submit_sm awaiting their response
// (registered_delivery 1, GSM text `t=<unix ns> smppclient <i>` so the sink can time them).
// After `duration` seconds no new submits; it waits up to 10 s for the last responses and
// receipts, then prints one `SMPPCLIENT_RESULT key=value ...` line. Receipts are counted by
// deliver_sm with esm_class 0x04, each answered with deliver_sm_resp at once.
'use strict';
const smpp = require('smpp');

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}
const HOST = arg('--host', '127.0.0.1');
const PORT = Number(arg('--port', 2775));
const BINDS = Number(arg('--binds', 4));
const WINDOW = Number(arg('--window', 64));
const DURATION = Number(arg('--duration', 10));
const DESTS = Number(arg('--destinations', 10000));

const unixNs = () => BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
let sent = 0, accepted = 0, refused = 0, receipts = 0;
let stopAt = 0, startedAt = 0, lastRespAt = 0, bound = 0, done = false;

function pump(session) {
  while (!done && session.outstanding < WINDOW && performance.now() < stopAt) {
    const i = sent++;
    session.outstanding++;
    session.submit_sm({
      source_addr_ton: 1, source_addr_npi: 1, source_addr: '15550100000',
      dest_addr_ton: 1, dest_addr_npi: 1, destination_addr: String(15551000000 + (i % DESTS)),
      registered_delivery: 1,
      short_message: `t=${unixNs()} smppclient ${i}`,
    }, (pdu) => {
      session.outstanding--;
      if (pdu.command_status === 0) accepted++; else refused++;
      lastRespAt = performance.now();
      pump(session);
    });
  }
}

const sessions = [];
for (let b = 0; b < BINDS; b++) {
  const session = smpp.connect({ url: `smpp://${HOST}:${PORT}` });
  session.outstanding = 0;
  sessions.push(session);
  session.on('error', (e) => { console.error(`bind ${b}: ${e.message}`); });
  session.on('deliver_sm', (pdu) => {
    if ((pdu.esm_class & 0x3c) === 0x04) receipts++;
    session.send(pdu.response());
  });
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.bind_transceiver({ system_id: 'bench', password: 'bench' }, (pdu) => {
    if (pdu.command_status !== 0) { console.error(`bind ${b} refused: ${pdu.command_status}`); process.exit(1); }
    if (++bound === BINDS) {
      startedAt = performance.now();
      stopAt = startedAt + DURATION * 1000;
      sessions.forEach(pump);
      setTimeout(finish, DURATION * 1000);
    }
  });
}

function finish() {
  const deadline = performance.now() + 10000;
  const check = () => {
    if ((accepted + refused < sent || receipts < accepted) && performance.now() < deadline) {
      setTimeout(check, 50);
      return;
    }
    done = true;
    const secs = (lastRespAt - startedAt) / 1000;
    console.log(`SMPPCLIENT_RESULT binds=${BINDS} window=${WINDOW} sent=${sent} accepted=${accepted} ` +
      `refused=${refused} receipts=${receipts} seconds=${secs.toFixed(3)} ` +
      `submits_per_s=${(accepted / secs).toFixed(0)}`);
    sessions.forEach((s) => s.close());
    process.exit(0);
  };
  check();
}
