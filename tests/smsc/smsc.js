// An SMPP 3.4 SMSC for Dialtone's interop tests, built on the npm package `smpp` (server mode),
// an implementation independent of Dialtone's own codec. Started from tests/interop/smsc.py.
//
//   node smsc.js [--smpp-port N] [--http-port M]      (or SMSC_PORT / SMSC_HTTP_PORT; 0: any)
//
// SMSC_SYSTEM_ID sets the system_id of bind responses (default DIALTONE-TEST-SMSC, 18 characters,
// longer than SMPP's 16: strict ESMEs such as Jasmin's client refuse it).
//
// Listens on 127.0.0.1 only. Accepts any bind. Answers submit_sm with a message id and, when
// the submit asked for one (registered_delivery), sends a delivery receipt as deliver_sm
// (esm_class 0x04, `id:... stat:DELIVRD ...` text plus the receipted_message_id and
// message_state TLVs) to a bound receiver or transceiver.
//
// Control API (JSON over HTTP on 127.0.0.1):
//   GET  /submitted   every submit_sm received, in order
//   GET  /deliveries  every deliver_sm sent, with the status of its deliver_sm_resp (null: none yet)
//   GET  /binds       the sessions bound now
//   POST /deliver     {from, to, text, encoding?: "gsm7"|"ucs2", parts?: n, system_id?}
//   POST /behaviour   {throttle_next?: n, reject_prefix?: "+1555"|null,
//                      receipt?: "DELIVRD"|"UNDELIV"|"none", receipt_delay_ms?: ms}
//   POST /reset       forget submits and deliveries, back to the default behaviour
// Prints `READY smpp=<port> http=<port>` once both listen.
'use strict';
const http = require('http');
const smpp = require('smpp');

function arg(name, env, dflt) {
  const i = process.argv.indexOf(name);
  if (i >= 0 && i + 1 < process.argv.length) return Number(process.argv[i + 1]);
  if (process.env[env]) return Number(process.env[env]);
  return dflt;
}
const SMPP_PORT = arg('--smpp-port', 'SMSC_PORT', 2775);
const HTTP_PORT = arg('--http-port', 'SMSC_HTTP_PORT', 0);
const SYSTEM_ID = process.env.SMSC_SYSTEM_ID || 'DIALTONE-TEST-SMSC';

// Keep submit_sm's short_message as the octets received: the control API reports them as they
// came, not as this library would decode them.
smpp.commands.submit_sm.params.short_message.filter = {
  encode: (v) => v,
  decode: (v) => v,
};

const DEFAULT_BEHAVIOUR = { throttle_next: 0, reject_prefix: null, receipt: 'DELIVRD', receipt_delay_ms: 100 };
let behaviour = { ...DEFAULT_BEHAVIOUR };
let submitted = [];
let deliveries = [];
let nextId = 1;
let nextRef = 1;
const sessions = new Set();

function e164(addr, ton) {
  return ton === 1 && addr && !addr.startsWith('+') ? '+' + addr : addr;
}

function address(number) {
  if (/[A-Za-z]/.test(number)) return { ton: 5, npi: 0, addr: number };
  return { ton: 1, npi: 1, addr: String(number).replace(/^\+/, '') };
}

// The concatenation header: IE 0x00 (8-bit reference) or 0x08 (16-bit reference).
function parseUdh(buf) {
  if (!buf.length || buf[0] + 1 > buf.length) return null;
  const ies = [];
  let concat = null;
  for (let i = 1; i + 1 < buf[0] + 1; ) {
    const id = buf[i], len = buf[i + 1], data = buf.slice(i + 2, i + 2 + len);
    ies.push({ id, data: data.toString('hex') });
    if (id === 0x00 && len === 3) concat = { reference: data[0], total: data[1], seq: data[2] };
    if (id === 0x08 && len === 4) concat = { reference: data.readUInt16BE(0), total: data[2], seq: data[3] };
    i += 2 + len;
  }
  return { length: buf[0], ies, concat };
}

function decodeText(dataCoding, bytes) {
  switch (dataCoding & 0x0f ? dataCoding : 0) {
    case 0: return smpp.encodings.ASCII.decode(bytes);
    case 1: case 3: return smpp.encodings.LATIN1.decode(bytes);
    case 8: return smpp.encodings.UCS2.decode(bytes);
    default: return null;
  }
}

function stamp(d) {
  const p = (n) => String(n).padStart(2, '0');
  return p(d.getUTCFullYear() % 100) + p(d.getUTCMonth() + 1) + p(d.getUTCDate()) + p(d.getUTCHours()) + p(d.getUTCMinutes());
}

function receivers(systemId) {
  return [...sessions].filter((s) => s.bound && s.mode !== 'transmitter' && (!systemId || s.systemId === systemId));
}

// Sends a deliver_sm and records it with the answer it gets.
function deliver(s, kind, options) {
  const record = { kind, system_id: s.systemId, sequence_number: null, command_status: null, sent_at: new Date().toISOString() };
  deliveries.push(record);
  s.session.deliver_sm(options, (resp) => { record.command_status = resp.command_status; });
  // `send` numbered the PDU synchronously.
  record.sequence_number = s.session.sequence;
  return record;
}

function sendReceipt(s, sm, id, stat) {
  const now = new Date();
  const ok = stat === 'DELIVRD';
  const text = `id:${id} sub:001 dlvrd:${ok ? '001' : '000'} submit date:${stamp(sm.at)} done date:${stamp(now)} stat:${stat} err:${ok ? '000' : '001'} text:`;
  const targets = s.bound && s.mode !== 'transmitter' ? [s] : receivers(s.systemId);
  if (!targets.length) return;
  deliver(targets[0], 'receipt', {
    source_addr_ton: sm.dest_ton, source_addr_npi: sm.dest_npi, source_addr: sm.dest_addr,
    dest_addr_ton: sm.source_ton, dest_addr_npi: sm.source_npi, destination_addr: sm.source_addr,
    esm_class: 0x04, data_coding: 0,
    short_message: Buffer.from(text, 'latin1'),
    receipted_message_id: id,
    message_state: ok ? 2 : 5,
  });
}

const server = smpp.createServer((session) => {
  const s = { session, bound: false, mode: null, systemId: null, remote: `${session.socket.remoteAddress}:${session.socket.remotePort}`, boundAt: null };
  sessions.add(s);
  const bind = (mode) => (pdu) => {
    s.bound = true; s.mode = mode; s.systemId = pdu.system_id; s.boundAt = new Date().toISOString();
    session.send(pdu.response({ system_id: SYSTEM_ID }));
  };
  session.on('bind_transceiver', bind('transceiver'));
  session.on('bind_transmitter', bind('transmitter'));
  session.on('bind_receiver', bind('receiver'));
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => { s.bound = false; session.send(pdu.response()); session.close(); });
  session.on('close', () => { s.bound = false; sessions.delete(s); });
  session.on('error', () => { s.bound = false; sessions.delete(s); });
  session.on('submit_sm', (pdu) => {
    const raw = Buffer.isBuffer(pdu.short_message) ? pdu.short_message : Buffer.alloc(0);
    const udhi = (pdu.esm_class & 0x40) !== 0;
    const udh = udhi ? parseUdh(raw) : null;
    const body = udh ? raw.slice(udh.length + 1) : raw;
    const dest = e164(pdu.destination_addr, pdu.dest_addr_ton);
    const record = {
      system_id: s.systemId,
      source: e164(pdu.source_addr, pdu.source_addr_ton), source_ton: pdu.source_addr_ton, source_npi: pdu.source_addr_npi,
      dest, dest_ton: pdu.dest_addr_ton, dest_npi: pdu.dest_addr_npi,
      esm_class: pdu.esm_class, data_coding: pdu.data_coding, registered_delivery: pdu.registered_delivery,
      validity_period: pdu.validity_period || '',
      short_message: raw.toString('hex'), udh, text: decodeText(pdu.data_coding, body),
      command_status: 0, message_id: null, time: new Date().toISOString(),
    };
    submitted.push(record);
    if (behaviour.throttle_next > 0) {
      behaviour.throttle_next -= 1;
      record.command_status = smpp.ESME_RTHROTTLED;
      session.send(pdu.response({ command_status: smpp.ESME_RTHROTTLED }));
      return;
    }
    if (behaviour.reject_prefix && dest.startsWith(behaviour.reject_prefix)) {
      record.command_status = smpp.ESME_RINVDSTADR;
      session.send(pdu.response({ command_status: smpp.ESME_RINVDSTADR }));
      return;
    }
    const id = 'smsc' + nextId++;
    record.message_id = id;
    session.send(pdu.response({ message_id: id }));
    const stat = behaviour.receipt;
    if ((pdu.registered_delivery & 0x03) && stat && stat !== 'none') {
      const sm = {
        at: new Date(), source_ton: pdu.source_addr_ton, source_npi: pdu.source_addr_npi, source_addr: pdu.source_addr,
        dest_ton: pdu.dest_addr_ton, dest_npi: pdu.dest_addr_npi, dest_addr: pdu.destination_addr,
      };
      setTimeout(() => sendReceipt(s, sm, id, stat), behaviour.receipt_delay_ms);
    }
  });
});

function splitText(text, n) {
  const chars = [...text];
  const size = Math.ceil(chars.length / n);
  const out = [];
  for (let i = 0; i < n; i++) out.push(chars.slice(i * size, (i + 1) * size).join(''));
  return out;
}

function handleDeliver(req) {
  const { from, to, text, encoding, parts, system_id: systemId } = req;
  if (typeof from !== 'string' || typeof to !== 'string' || typeof text !== 'string') {
    return [400, { error: 'from, to and text are required' }];
  }
  const targets = receivers(systemId);
  if (!targets.length) return [409, { error: 'no receiver or transceiver bound' }];
  const enc = encoding || (smpp.encodings.ASCII.match(text) ? 'gsm7' : 'ucs2');
  if (enc !== 'gsm7' && enc !== 'ucs2') return [400, { error: 'encoding is gsm7 or ucs2' }];
  const n = Math.max(1, Math.min(255, Number(parts) || 1));
  const encode = (t) => (enc === 'gsm7' ? smpp.encodings.ASCII.encode(t) : smpp.encodings.UCS2.encode(t));
  const src = address(from), dst = address(to);
  const ref = nextRef++ & 0xff;
  const sent = splitText(text, n).map((chunk, i) => {
    const udh = n > 1 ? Buffer.from([0x05, 0x00, 0x03, ref, n, i + 1]) : Buffer.alloc(0);
    return deliver(targets[0], 'message', {
      source_addr_ton: src.ton, source_addr_npi: src.npi, source_addr: src.addr,
      dest_addr_ton: dst.ton, dest_addr_npi: dst.npi, destination_addr: dst.addr,
      esm_class: n > 1 ? 0x40 : 0, data_coding: enc === 'gsm7' ? 0 : 8,
      short_message: Buffer.concat([udh, encode(chunk)]),
    });
  });
  return [200, { sent }];
}

function handleBehaviour(req) {
  for (const key of Object.keys(req)) {
    if (!(key in DEFAULT_BEHAVIOUR)) return [400, { error: `unknown behaviour ${key}` }];
  }
  if ('receipt' in req && !['DELIVRD', 'UNDELIV', 'none', null].includes(req.receipt)) {
    return [400, { error: 'receipt is DELIVRD, UNDELIV or none' }];
  }
  behaviour = { ...behaviour, ...req };
  if (behaviour.receipt === null) behaviour.receipt = 'none';
  return [200, behaviour];
}

const api = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    let status = 200, out;
    try {
      const json = body ? JSON.parse(body) : {};
      const route = `${req.method} ${req.url.split('?')[0]}`;
      if (route === 'GET /submitted') out = submitted;
      else if (route === 'GET /deliveries') out = deliveries;
      else if (route === 'GET /binds') {
        out = [...sessions].filter((s) => s.bound).map((s) => ({ system_id: s.systemId, mode: s.mode, remote: s.remote, bound_at: s.boundAt }));
      } else if (route === 'GET /behaviour') out = behaviour;
      else if (route === 'POST /deliver') [status, out] = handleDeliver(json);
      else if (route === 'POST /behaviour') [status, out] = handleBehaviour(json);
      else if (route === 'POST /reset') {
        submitted = []; deliveries = []; behaviour = { ...DEFAULT_BEHAVIOUR };
        out = { ok: true };
      } else [status, out] = [404, { error: `no route ${route}` }];
    } catch (e) {
      [status, out] = [400, { error: String(e) }];
    }
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(out));
  });
});

server.listen(SMPP_PORT, '127.0.0.1', () => {
  api.listen(HTTP_PORT, '127.0.0.1', () => {
    console.log(`READY smpp=${server.address().port} http=${api.address().port}`);
  });
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
