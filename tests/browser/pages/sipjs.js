// SIP.js behind the adapter of peer.js.
import { Invitation, Inviter, Registerer, SessionState, UserAgent, version as LIBRARY_VERSION } from "sip.js";
import { AUDIO, installPeer } from "./peer.js";

installPeer("sipjs", LIBRARY_VERSION, (cfg, event) => {
  const uri = UserAgent.makeURI(cfg.sipUri);
  if (!uri) throw new Error(`bad sipUri ${cfg.sipUri}`);
  const ua = new UserAgent({
    uri,
    transportOptions: { server: cfg.wsUrl },
    authorizationUsername: cfg.username,
    authorizationPassword: cfg.password,
    userAgentString: `interop-sipjs/${LIBRARY_VERSION}`,
    logBuiltinEnabled: false,
    logLevel: "warn",
    logConnector: (level, category, label, content) => console.log(`sip.js ${level} ${category}: ${content}`),
    sessionDescriptionHandlerFactoryOptions: {
      peerConnectionConfiguration: { iceServers: [] },
      iceGatheringTimeout: 2000,
    },
  });
  let registerer = null;
  let session = null;
  let hungUp = false;
  // Incoming INVITEs wait here until the page takes one (incoming()); a second one while a
  // call is on is refused busy.
  const invitations = [];
  let invited = null;
  ua.delegate = {
    onInvite(invitation) {
      if (session || invitations.length) { invitation.reject({ statusCode: 486 }); return; }
      invitations.push(invitation);
      if (invited) invited();
    },
  };
  return {
    start: () => ua.start(),
    register() {
      registerer = new Registerer(ua, { expires: cfg.expires ?? 300 });
      return new Promise((resolve) => {
        registerer.register({
          requestDelegate: {
            onAccept: (r) => resolve({ ok: true, status: r.message.statusCode }),
            onReject: (r) => resolve({ ok: false, status: r.message.statusCode, reason: r.message.reasonPhrase }),
          },
        }).catch((err) => resolve({ ok: false, status: null, reason: String(err) }));
      });
    },
    unregister: () => registerer && registerer.unregister(),
    call(target, h) {
      const to = UserAgent.makeURI(target);
      if (!to) throw new Error(`bad target ${target}`);
      session = new Inviter(ua, to, {
        sessionDescriptionHandlerOptions: { constraints: { audio: cfg.constraints || AUDIO, video: false } },
      });
      session.stateChange.addListener((s) => {
        if (s === SessionState.Terminated) h.onEnded(hungUp ? "local" : "remote");
      });
      session.invite({
        requestDelegate: {
          onProgress: (r) => h.onProgress(r.message.statusCode),
          onAccept: (r) => h.onAnswered(r.message.statusCode),
          onReject: (r) => h.onFailed(r.message.statusCode, r.message.reasonPhrase),
        },
      }).catch((err) => h.onFailed(null, String(err)));
    },
    async incoming(timeoutMs) {
      if (!invitations.length) {
        await Promise.race([new Promise((r) => { invited = r; }), new Promise((r) => setTimeout(r, timeoutMs))]);
      }
      const inv = invitations.shift();
      if (!inv) return null;
      session = inv;
      const headers = {};
      for (const [name, values] of Object.entries(inv.request.headers)) {
        if (/^x-/i.test(name)) headers[name] = values.map((v) => v.raw).join(", ");
      }
      return { from: inv.request.from.uri.toString(), to: inv.request.to.uri.toString(), headers };
    },
    answer(h) {
      const inv = session;
      inv.stateChange.addListener((s) => {
        if (s === SessionState.Established) h.onAnswered(200);
        if (s === SessionState.Terminated) h.onEnded(hungUp ? "local" : "remote");
      });
      inv.accept({
        sessionDescriptionHandlerOptions: { constraints: { audio: cfg.constraints || AUDIO, video: false } },
      }).catch((err) => h.onFailed(null, String(err)));
    },
    sendDtmf: (digits, opts) => session.sessionDescriptionHandler.sendDtmf(digits, opts),
    async hangup() {
      hungUp = true;
      if (session.state === SessionState.Established) await session.bye();
      else if (session instanceof Invitation) { if (session.state !== SessionState.Terminated) await session.reject(); }
      else if (session.state === SessionState.Establishing || session.state === SessionState.Initial) await session.cancel();
    },
    remoteStream: () => session?.sessionDescriptionHandler?.remoteMediaStream ?? null,
    localStream: () => session?.sessionDescriptionHandler?.localMediaStream ?? null,
    peerConnection: () => session?.sessionDescriptionHandler?.peerConnection ?? null,
    stop: () => ua.stop(),
  };
});
