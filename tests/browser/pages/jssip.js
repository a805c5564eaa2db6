// JsSIP behind the adapter of peer.js.
import JsSIP from "jssip";
import { AUDIO, installPeer } from "./peer.js";

installPeer("jssip", JsSIP.version, (cfg, event) => {
  if (cfg.debug) JsSIP.debug.enable("JsSIP:*");
  else JsSIP.debug.disable();
  const socket = new JsSIP.WebSocketInterface(cfg.wsUrl);
  const ua = new JsSIP.UA({
    sockets: [socket],
    uri: cfg.sipUri,
    authorization_user: cfg.username,
    password: cfg.password,
    register: false,
    register_expires: cfg.expires ?? 300,
    session_timers: false,
    user_agent: `interop-jssip/${JsSIP.version}`,
  });
  let session = null;
  let hungUp = false;
  return {
    start() {
      return new Promise((resolve, reject) => {
        ua.once("connected", () => resolve());
        ua.once("disconnected", (e) => reject(new Error(`WebSocket closed: ${e && e.code}`)));
        ua.start();
      });
    },
    register() {
      return new Promise((resolve) => {
        ua.once("registered", (e) => resolve({ ok: true, status: e.response.status_code }));
        ua.once("registrationFailed", (e) => resolve({ ok: false, status: e.response ? e.response.status_code : null, reason: e.cause }));
        ua.register();
      });
    },
    unregister() {
      return new Promise((resolve) => {
        ua.once("unregistered", () => resolve());
        ua.unregister();
        setTimeout(resolve, 3000);
      });
    },
    call(target, h) {
      session = ua.call(target, {
        mediaConstraints: { audio: cfg.constraints || AUDIO, video: false },
        pcConfig: { iceServers: [] },
        eventHandlers: {
          progress: (e) => h.onProgress(e.response ? e.response.status_code : null),
          accepted: (e) => h.onAnswered(e.response ? e.response.status_code : null),
          failed: (e) => h.onFailed(e.message && e.message.status_code ? e.message.status_code : null, e.cause),
          ended: (e) => h.onEnded(hungUp || e.originator === "local" ? "local" : "remote", e.cause),
        },
      });
    },
    sendDtmf(digits, opts) {
      session.sendDTMF(digits, { transportType: "RFC2833", duration: opts.duration, interToneGap: opts.interToneGap });
      return true;
    },
    async hangup() {
      hungUp = true;
      if (session && !session.isEnded()) session.terminate();
    },
    remoteStream() {
      const pc = session && session.connection;
      if (!pc) return null;
      const tracks = pc.getReceivers().map((r) => r.track).filter((t) => t && t.kind === "audio");
      return tracks.length ? new MediaStream(tracks) : null;
    },
    localStream() {
      const pc = session && session.connection;
      if (!pc) return null;
      const tracks = pc.getSenders().map((s) => s.track).filter((t) => t && t.kind === "audio");
      return tracks.length ? new MediaStream(tracks) : null;
    },
    peerConnection: () => (session ? session.connection : null),
    stop() {
      ua.stop();
    },
  };
});
