// The part of a SIP stack's test page that does not depend on the stack: the call timeline
// (register, call, DTMF at offsets after the answer, hang up), the measurements of what the page
// hears (window.__probe, pages/probe.js) and sends, and the in-page checks that need no server
// (the fake microphone, a loopback RTCPeerConnection pair).
//
// A stack page calls installPeer(makeAdapter); the driver then runs
//   await window.peer.run({wsUrl, sipUri, username, password, target, dtmf: [{at_ms, digits}],
//                          hangup_after_ms, ...})
// An adapter wraps one SIP stack behind these calls (each may throw):
//   start(), register() -> {ok, status, reason}, unregister(), call(target, handlers),
//   sendDtmf(digits, {duration, interToneGap}) -> bool, hangup(), remoteStream(), localStream(),
//   peerConnection(), stop().
// handlers: onProgress(status), onAnswered(status), onFailed(status, reason),
//           onEnded(by: "remote" | "local", cause).
// With cfg.answer (instead of a target) the page waits, registered, for an incoming call and
// answers it; the adapter then also has (a stack without them cannot answer):
//   incoming(timeout_ms) -> {from, to, headers: {name: value}} or null, answer(handlers),
// and the call goes on as an outgoing one does (DTMF, measurements, hang up after
// hangup_after_ms unless the far end ends it first).

export const AUDIO = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function setState(state) {
  document.body.dataset.state = state;
  const el = document.getElementById("state");
  if (el) el.textContent = state;
}

function show(line) {
  const el = document.getElementById("log");
  if (el) el.textContent += line + "\n";
}

// Selected candidate pair, codecs and packet counts of a peer connection.
export async function rtcStats(pc) {
  if (!pc) return null;
  const stats = await pc.getStats();
  const byId = new Map();
  stats.forEach((s) => byId.set(s.id, s));
  const out = { inbound: null, outbound: null, pair: null, dtls: null };
  stats.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      out.inbound = {
        packets: s.packetsReceived, lost: s.packetsLost, bytes: s.bytesReceived,
        codec: byId.get(s.codecId)?.mimeType ?? null, jitter: s.jitter,
        audio_level: s.audioLevel ?? null,
      };
    }
    if (s.type === "outbound-rtp" && s.kind === "audio") {
      out.outbound = { packets: s.packetsSent, bytes: s.bytesSent, codec: byId.get(s.codecId)?.mimeType ?? null };
    }
    if (s.type === "transport") {
      out.dtls = { state: s.dtlsState, srtp_cipher: s.srtpCipher ?? null, ice_state: s.iceState ?? null };
      const pair = byId.get(s.selectedCandidatePairId);
      if (pair) {
        const l = byId.get(pair.localCandidateId), r = byId.get(pair.remoteCandidateId);
        out.pair = {
          local: l && `${l.address}:${l.port} ${l.candidateType}`,
          remote: r && `${r.address}:${r.port} ${r.candidateType}`,
          state: pair.state,
        };
      }
    }
  });
  return out;
}

async function probeFor(stream, ms, cfg) {
  const id = await window.__probe.start(stream, { freqs: cfg.freqs || [], window_ms: cfg.window_ms || 100, keep_pcm: cfg.record !== false });
  await sleep(ms);
  return window.__probe.stop(id, cfg);
}

export function installPeer(stack, version, makeAdapter) {
  async function run(cfg) {
    const t0 = performance.now();
    const now = () => Math.round(performance.now() - t0);
    const res = {
      stack, version, events: [], registered: null, register: null, call: null, dtmf_sent: [],
      heard: null, sent: null, stats: null, error: null,
    };
    const event = (name, detail) => {
      res.events.push({ t_ms: now(), event: name, detail: detail ?? null });
      show(`${now()} ms ${name} ${detail === undefined ? "" : JSON.stringify(detail)}`);
    };
    const a = makeAdapter(cfg, event);
    setState("starting");
    try {
      await a.start();
      event("transport-connected");
      if (cfg.register !== false) {
        setState("registering");
        res.register = await a.register();
        res.registered = !!res.register.ok;
        event(res.registered ? "registered" : "register-failed", res.register);
        if (!res.registered) {
          setState("register-failed");
          return res;
        }
        setState("registered");
      }
      // Wall-clock time of the page's t0 (ms since the epoch), to line its timeline up with
      // other peers'.
      res.epoch_ms = performance.timeOrigin + t0;
      if (cfg.target) await call(cfg, a, res, event, now, t0);
      else if (cfg.answer) await answer(cfg, a, res, event, now, t0);
      if (cfg.register !== false && cfg.unregister) {
        await a.unregister();
        event("unregistered");
      }
    } catch (err) {
      res.error = String(err && err.stack ? err.stack : err);
      event("error", String(err));
    } finally {
      try { await a.stop(); } catch (err) { event("stop-error", String(err)); }
      if (res.error) setState("error");
    }
    return res;
  }

  async function call(cfg, a, res, event, now, t0) {
    const c = res.call = { invited_ms: now(), progress: [], answered_ms: null, status: null, reason: null, ended_ms: null, ended_by: null, cause: null };
    let answered, ended;
    const answeredP = new Promise((r) => { answered = r; });
    const endedP = new Promise((r) => { ended = r; });
    setState("calling");
    event("invite", cfg.target);
    a.call(cfg.target, {
      onProgress(status) { c.progress.push([now(), status]); event("progress", status); },
      onAnswered(status) { c.status = status; c.answered_ms = now(); event("answered", status); answered(true); },
      onFailed(status, reason) { c.status = status; c.reason = reason; c.ended_ms = now(); event("failed", { status, reason }); answered(false); ended(); },
      onEnded(by, cause) {
        if (c.ended_ms === null) { c.ended_ms = now(); c.ended_by = by; c.cause = cause ?? null; }
        event("ended", { by, cause }); ended();
      },
    });
    const ok = await Promise.race([answeredP, sleep(cfg.answer_timeout_ms ?? 15000).then(() => null)]);
    if (ok === null) {
      event("answer-timeout");
      c.reason = "no answer within answer_timeout_ms";
      try { await a.hangup(); } catch (err) { event("hangup-error", String(err)); }
      await Promise.race([endedP, sleep(2000)]);
      setState("failed");
      return;
    }
    if (!ok) { setState("failed"); return; }
    await inCall(cfg, a, res, event, endedP, t0);
  }

  // An incoming call, answered as soon as it arrives.
  async function answer(cfg, a, res, event, now, t0) {
    if (typeof a.incoming !== "function") throw new Error(`${stack}: answering is not supported`);
    const c = res.call = { incoming_ms: null, from: null, to: null, headers: null, progress: [], answered_ms: null, status: null, reason: null, ended_ms: null, ended_by: null, cause: null };
    setState("waiting-call");
    event("waiting-call");
    const inv = await a.incoming(cfg.incoming_timeout_ms ?? 20000);
    if (!inv) {
      c.reason = "no incoming call within incoming_timeout_ms";
      event("incoming-timeout");
      setState("failed");
      return;
    }
    c.incoming_ms = now();
    Object.assign(c, { from: inv.from, to: inv.to, headers: inv.headers });
    event("incoming", inv);
    let answered, ended;
    const answeredP = new Promise((r) => { answered = r; });
    const endedP = new Promise((r) => { ended = r; });
    if (cfg.answer_delay_ms) await sleep(cfg.answer_delay_ms);
    a.answer({
      onAnswered(status) { c.status = status; c.answered_ms = now(); event("answered", status); answered(true); },
      onFailed(status, reason) { c.status = status; c.reason = reason; c.ended_ms = now(); event("failed", { status, reason }); answered(false); ended(); },
      onEnded(by, cause) {
        if (c.ended_ms === null) { c.ended_ms = now(); c.ended_by = by; c.cause = cause ?? null; }
        event("ended", { by, cause }); answered(false); ended();
      },
    });
    const ok = await Promise.race([answeredP, sleep(cfg.answer_timeout_ms ?? 15000).then(() => null)]);
    if (!ok) {
      if (ok === null) { event("answer-timeout"); c.reason = "not established within answer_timeout_ms"; }
      setState("failed");
      return;
    }
    await inCall(cfg, a, res, event, endedP, t0);
  }

  // From the answer on (either direction): measure, send the DTMF, hang up or be hung up.
  async function inCall(cfg, a, res, event, endedP, t0) {
    const c = res.call;
    setState("in-call");
    const answeredAt = performance.now();
    // What arrives, from the answer on; what the fake microphone sends, as a check on the input.
    const remote = a.remoteStream();
    const heardId = remote ? await window.__probe.start(remote, { freqs: cfg.freqs || [], window_ms: cfg.window_ms || 100, keep_pcm: cfg.record !== false }) : null;
    const local = a.localStream();
    const sentId = local ? await window.__probe.start(local, { freqs: cfg.freqs || [], window_ms: cfg.window_ms || 100, keep_pcm: false }) : null;
    if (!remote) event("no-remote-stream");
    const timers = [];
    for (const d of cfg.dtmf || []) {
      timers.push(setTimeout(() => {
        let sent = false, error = null;
        try { sent = a.sendDtmf(d.digits, { duration: cfg.dtmf_duration_ms ?? 120, interToneGap: cfg.dtmf_gap_ms ?? 80 }); } catch (err) { error = String(err); }
        res.dtmf_sent.push({ t_ms: Math.round(performance.now() - answeredAt), digits: d.digits, sent: sent !== false && !error, error });
        event("dtmf", { digits: d.digits, sent, error });
      }, d.at_ms));
    }
    // The stack closes its peer connection when the far end hangs up: keep the latest stats.
    const takeStats = async () => {
      const pc = a.peerConnection();
      if (!pc || pc.connectionState === "closed") return;
      const s = await rtcStats(pc).catch((err) => ({ error: String(err) }));
      if (s && (s.inbound || s.error)) res.stats = s;
    };
    const statsTimer = setInterval(takeStats, 500);
    const hangupAfter = cfg.hangup_after_ms ?? 30000;
    const who = await Promise.race([endedP.then(() => "remote"), sleep(hangupAfter).then(() => "local")]);
    timers.forEach(clearTimeout);
    clearInterval(statsTimer);
    await takeStats();
    if (who === "local") {
      c.ended_by = c.ended_by ?? "local";
      event("hangup");
      try { await a.hangup(); } catch (err) { event("hangup-error", String(err)); }
      await Promise.race([endedP, sleep(3000)]);
    }
    if (heardId !== null) {
      res.heard = await window.__probe.stop(heardId, cfg);
      res.heard.started_ms = Math.round(res.heard.started_at - t0);
    }
    if (sentId !== null) {
      res.sent = await window.__probe.stop(sentId, cfg);
      res.sent.started_ms = Math.round(res.sent.started_at - t0);
    }
    setState("ended");
  }

  // The fake microphone itself, measured for `ms`.
  async function mic(cfg = {}) {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: cfg.constraints || AUDIO, video: false });
    const track = stream.getAudioTracks()[0];
    const out = await probeFor(stream, cfg.ms ?? 2000, cfg);
    out.settings = track.getSettings();
    track.stop();
    return out;
  }

  // The fake microphone through two RTCPeerConnections joined inside the page (no server):
  // codec negotiated as cfg.codec (e.g. "PCMU"), DTLS-SRTP, ICE over 127.0.0.1.
  async function loopback(cfg = {}) {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: cfg.constraints || AUDIO, video: false });
    const pc1 = new RTCPeerConnection({ iceServers: [] });
    const pc2 = new RTCPeerConnection({ iceServers: [] });
    const candidates = { a: [], b: [] };
    // Only 127.0.0.1 candidates are handed across, so every check and packet goes to the
    // loopback (Chromium gathers on the machine's other interfaces too).
    const hand = (list, to) => (e) => {
      if (!e.candidate) return;
      list.push(e.candidate.candidate);
      if (e.candidate.address === "127.0.0.1") to.addIceCandidate(e.candidate);
    };
    pc1.onicecandidate = hand(candidates.a, pc2);
    pc2.onicecandidate = hand(candidates.b, pc1);
    const remote = new Promise((r) => { pc2.ontrack = (e) => r(e.streams[0] || new MediaStream([e.track])); });
    const tr = pc1.addTransceiver(stream.getAudioTracks()[0], { direction: "sendonly", streams: [stream] });
    if (cfg.codec) {
      const codecs = RTCRtpSender.getCapabilities("audio").codecs.filter((c) => c.mimeType.toLowerCase() === `audio/${cfg.codec.toLowerCase()}`);
      if (codecs.length === 0) throw new Error(`no ${cfg.codec} in the browser's codecs`);
      tr.setCodecPreferences(codecs);
    }
    await pc1.setLocalDescription();
    await pc2.setRemoteDescription(pc1.localDescription);
    await pc2.setLocalDescription();
    await pc1.setRemoteDescription(pc2.localDescription);
    const got = await Promise.race([remote, sleep(5000).then(() => null)]);
    if (!got) throw new Error("loopback: no remote track in 5 s");
    const out = await probeFor(got, cfg.ms ?? 3000, cfg);
    out.stats = await rtcStats(pc2);
    out.candidates = candidates;
    out.offer = pc1.localDescription.sdp;
    pc1.close(); pc2.close();
    stream.getTracks().forEach((t) => t.stop());
    return out;
  }

  window.peer = { stack, version, run, mic, loopback };
  setState("ready");
}
