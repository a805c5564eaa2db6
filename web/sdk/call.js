// A Call: one SIP session (an Inviter for OUTGOING, an Invitation for INCOMING) behind the
// method and event names of Twilio's Call.

import { SessionState } from 'sip.js';
import { EventEmitter } from './emitter.js';
import { DialtoneError, errorFromMedia, errorFromResponse } from './errors.js';
import { RemoteAudio, VolumeMeter } from './audio.js';

const State = Object.freeze({
  Pending: 'pending',
  Connecting: 'connecting',
  Ringing: 'ringing',
  Open: 'open',
  Closed: 'closed',
});

const CallDirection = Object.freeze({
  Incoming: 'INCOMING',
  Outgoing: 'OUTGOING',
});

// Twilio's defaults for in-band digits.
const DTMF_TONE_MS = 160;
const DTMF_GAP_MS = 70;
// Twilio's `w` is a 500 ms pause; RTCDTMFSender's only pause character, `,`, lasts 2 s.
const INFO_PAUSE_MS = 500;
const DIGITS = /^[0-9A-Da-d*#wW,]*$/;

export class Call extends EventEmitter {
  // Calls are made by a Device (`device.connect()` and the 'incoming' event), not by pages.
  constructor(device, session, { direction, parameters, customParameters, constraints }) {
    super();
    this._device = device;
    this._session = session;
    this._direction = direction;
    this._status = direction === CallDirection.Incoming ? State.Pending : State.Connecting;
    this._constraints = constraints || { audio: true, video: false };
    this._muted = false;
    this._held = false;
    this._wasOpen = false;
    this._closed = false;
    this._canceling = false;
    this._hangupWhenEstablished = false;
    this._audio = new RemoteAudio();
    this._meter = null;
    this.parameters = parameters || {};
    this.customParameters = customParameters || new Map();

    session.delegate = {
      onSessionDescriptionHandler: (sdh) => this._handleSessionDescriptionHandler(sdh),
    };
    session.stateChange.addListener((state) => this._handleSessionState(state));
  }

  static get State() {
    return State;
  }

  static get CallDirection() {
    return CallDirection;
  }

  get direction() {
    return this._direction;
  }

  status() {
    return this._status;
  }

  isMuted() {
    return this._muted;
  }

  // Dialtone extension.
  isOnHold() {
    return this._held;
  }

  getRemoteStream() {
    const sdh = this._session.sessionDescriptionHandler;
    return sdh && sdh.remoteMediaStream ? sdh.remoteMediaStream : undefined;
  }

  getLocalStream() {
    const sdh = this._session.sessionDescriptionHandler;
    return sdh && sdh.localMediaStream ? sdh.localMediaStream : undefined;
  }

  // Answers an incoming call (200 OK with our SDP answer).
  accept(options = {}) {
    if (this._direction !== CallDirection.Incoming || this._status !== State.Pending) return;
    this._status = State.Connecting;
    const audio = options.rtcConstraints && options.rtcConstraints.audio !== undefined ? options.rtcConstraints.audio : true;
    this._constraints = { audio, video: false };
    this._session
      .accept({ sessionDescriptionHandlerOptions: { constraints: this._constraints } })
      .catch((err) => this._fail(mediaOrGeneral(err)));
  }

  // Refuses an incoming call: 486 Busy Here, which the server reports as `busy`.
  reject() {
    if (this._direction !== CallDirection.Incoming || this._status !== State.Pending) return;
    this._close();
    this.emit('reject');
    try {
      this._session.reject({ statusCode: 486, reasonPhrase: 'Busy Here' }).catch(() => {});
    } catch (_) {
      // The INVITE was cancelled at the same moment; nothing left to refuse.
    }
  }

  // Stops ringing here without answering the server: other registrations keep ringing and the
  // server's CANCEL (or timeout) ends the INVITE later.
  ignore() {
    if (this._direction !== CallDirection.Incoming || this._status !== State.Pending) return;
    this._close();
    this.emit('cancel');
  }

  // Hangs up whatever the call's stage: CANCEL before an answer, BYE after, 486 if pending.
  disconnect() {
    if (this._closed) return;
    if (this._status === State.Pending) {
      this.reject();
      return;
    }
    const session = this._session;
    switch (session.state) {
      case SessionState.Initial:
      case SessionState.Establishing:
        if (typeof session.cancel === 'function') {
          this._canceling = true;
          session.cancel().catch(() => {});
        } else {
          // An answered incoming call waiting for its ACK: hang up once it is established.
          this._hangupWhenEstablished = true;
        }
        break;
      case SessionState.Established:
        session.bye().catch(() => {});
        break;
      default:
        break;
    }
  }

  mute(shouldMute = true) {
    const muted = !!shouldMute;
    if (muted === this._muted) return;
    this._muted = muted;
    this._applyTracks();
    this.emit('mute', muted, this);
  }

  // Sends digits in the RTP stream (RFC 4733 telephone-events) through RTCDTMFSender. Digits
  // sent while earlier ones still play are queued behind them, not substituted for them.
  // `w` pauses: 2 s in-band (RTCDTMFSender's `,`), 500 ms on the SIP INFO fallback.
  sendDigits(digits) {
    if (typeof digits !== 'string' || !DIGITS.test(digits)) {
      throw new DialtoneError(31000, 'Illegal character passed into sendDigits');
    }
    if (this._status !== State.Open || digits === '') return;
    const sender = this._audioSender();
    if (sender && sender.dtmf && sender.dtmf.canInsertDTMF !== false) {
      const tones = digits.replace(/[wW]/g, ',').toUpperCase();
      sender.dtmf.insertDTMF(sender.dtmf.toneBuffer + tones, DTMF_TONE_MS, DTMF_GAP_MS);
      return;
    }
    // No telephone-event negotiated: SIP INFO (application/dtmf-relay), one digit at a time.
    this._infoQueue = (this._infoQueue || Promise.resolve()).then(() => this._sendInfoDigits(digits));
  }

  // Dialtone extension. Hold sends a re-INVITE with a=sendonly (unhold: a=sendrecv) and, on
  // this side, silences both directions. If the server refuses the re-INVITE, the call stays
  // held locally (both directions silenced) so the button still does what it says.
  hold(shouldHold = true) {
    const held = !!shouldHold;
    if (this._status !== State.Open) return Promise.reject(new DialtoneError(31000, 'Only an open call can be held'));
    if (held === this._held) return Promise.resolve();
    this._held = held;
    this._applyTracks();
    this.emit('hold', held, this);
    return new Promise((resolve) => {
      const done = () => {
        this._applyTracks();
        resolve();
      };
      this._session
        .invite({
          sessionDescriptionHandlerOptions: { constraints: this._constraints, hold: held },
          requestDelegate: { onAccept: done, onReject: done },
        })
        .catch(done);
    });
  }

  // Emitted as 'volume' every 50 ms while someone listens and the call is open.
  _listenerAdded(event) {
    if (event === 'volume') this._startVolumeMeter();
  }

  _startVolumeMeter() {
    if (this._meter || this._status !== State.Open || this.listenerCount('volume') === 0) return;
    this._meter = new VolumeMeter(this.getLocalStream(), this.getRemoteStream(), (input, output) => {
      if (this.listenerCount('volume') === 0) {
        this._meter.stop();
        this._meter = null;
        return;
      }
      this.emit('volume', input, output);
    });
  }

  _audioSender() {
    const sdh = this._session.sessionDescriptionHandler;
    const pc = sdh && sdh.peerConnection;
    if (!pc) return null;
    return pc.getSenders().find((s) => s.track && s.track.kind === 'audio') || pc.getSenders().find((s) => s.dtmf) || null;
  }

  async _sendInfoDigits(digits) {
    for (const digit of digits) {
      if (this._status !== State.Open) return;
      if (digit === 'w' || digit === 'W' || digit === ',') {
        await new Promise((r) => setTimeout(r, INFO_PAUSE_MS));
        continue;
      }
      const content = `Signal=${digit.toUpperCase()}\r\nDuration=${DTMF_TONE_MS}\r\n`;
      try {
        await this._session.info({
          requestOptions: { body: { contentDisposition: 'render', contentType: 'application/dtmf-relay', content } },
        });
      } catch (_) {
        return;
      }
      await new Promise((r) => setTimeout(r, DTMF_TONE_MS + DTMF_GAP_MS));
    }
  }

  // Mute silences what we send; hold silences both directions.
  _applyTracks() {
    const sdh = this._session.sessionDescriptionHandler;
    if (!sdh || typeof sdh.enableSenderTracks !== 'function') return;
    sdh.enableSenderTracks(!this._muted && !this._held);
    sdh.enableReceiverTracks(!this._held);
  }

  _handleSessionDescriptionHandler(sdh) {
    this._audio.attach(sdh.remoteMediaStream);
    this._applyTracks();
  }

  // Called by the Device with the Inviter's provisional and final responses.
  _handleProgress(message) {
    this._takeCallSid(message);
    if ((message.statusCode === 180 || message.statusCode === 183) && this._status === State.Connecting) {
      this._status = State.Ringing;
      this.emit('ringing', !!message.body);
    }
  }

  _handleAccepted(message) {
    this._takeCallSid(message);
  }

  _handleRejected(message) {
    this._takeCallSid(message);
    // The 487 that answers our own CANCEL is the hang-up we asked for, not an error.
    if (message.statusCode === 487 && this._canceling) return;
    this._fail(errorFromResponse(message));
  }

  _takeCallSid(message) {
    const sid = message.getHeader('X-Dialtone-Call-Sid');
    if (sid) this.parameters.CallSid = sid.trim();
  }

  _handleSessionState(state) {
    if (state === SessionState.Established) {
      if (this._closed) return;
      this._status = State.Open;
      this._wasOpen = true;
      this._applyTracks();
      this._audio.attach(this.getRemoteStream());
      this.emit('accept', this);
      this._startVolumeMeter();
      if (this._hangupWhenEstablished) this._session.bye().catch(() => {});
    } else if (state === SessionState.Terminated) {
      const before = this._status;
      const alreadyClosed = this._closed;
      this._close();
      // reject() and ignore() closed the call and emitted their event already.
      if (alreadyClosed) return;
      if (before === State.Pending) {
        this.emit('cancel');
      } else {
        // SIP.js ends the session just before it hands over the final response that ended it;
        // waiting a tick lets that response's 'error' come first, as in Twilio's SDK.
        setTimeout(() => this.emit('disconnect', this));
      }
    }
  }

  _fail(error) {
    if (this._failed) return;
    this._failed = true;
    this.emit('error', error);
    this._device._handleCallError(error, this);
  }

  _close() {
    if (this._closed) return;
    this._closed = true;
    this._status = State.Closed;
    if (this._meter) this._meter.stop();
    this._meter = null;
    this._audio.detach();
    this._device._removeCall(this);
  }
}

function mediaOrGeneral(err) {
  if (err && (err.name === 'NotAllowedError' || err.name === 'NotFoundError' || err.name === 'NotReadableError' || err.name === 'SecurityError' || err.name === 'OverconstrainedError')) {
    return errorFromMedia(err);
  }
  if (err instanceof DialtoneError) return err;
  return new DialtoneError(31000, err && err.message ? err.message : undefined, err);
}

export { mediaOrGeneral };
