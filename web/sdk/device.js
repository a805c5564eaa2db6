// A Device: one SIP user agent over a WebSocket (RFC 7118) to Dialtone, registered with an
// Access Token, behind the method and event names of Twilio's Device.

import { Inviter, Registerer, RegistererState, UserAgent, UserAgentState } from 'sip.js';
import { EventEmitter } from './emitter.js';
import { Call, mediaOrGeneral } from './call.js';
import { DialtoneError, errorFromResponse } from './errors.js';
import { decodeToken } from './token.js';
import { escapeUser, hostOf } from './sip-uri.js';

export const VERSION = '0.1.0';

const State = Object.freeze({
  Unregistered: 'unregistered',
  Registering: 'registering',
  Registered: 'registered',
  Destroyed: 'destroyed',
});

const PRESENCES = ['available', 'away'];
const DEFAULT_TOKEN_REFRESH_MS = 10000;
const REGISTER_EXPIRES_S = 600;
// The registration is refreshed at 90% of the interval the server granted.
const REGISTER_REFRESH_PERCENT = 90;
const RECONNECT_MIN_MS = 1000;
const RECONNECT_MAX_MS = 30000;
// setTimeout's largest delay; tokens live 24 h at most, so this only guards bad `exp`s.
const MAX_TIMER_MS = 2147483647;

function defaultServer() {
  if (typeof location === 'undefined') return 'ws://127.0.0.1/sip';
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/sip`;
}

// SIP.js refreshes a registration by calling `register()` with no options from its own timer.
// Routing those calls through the Device lets a refresh the server refuses (an expired token:
// 403, X-Dialtone-Error 20104) reach the 'error' event like any other refusal.
class RefreshingRegisterer extends Registerer {
  constructor(userAgent, options, onRefreshRejected) {
    super(userAgent, options);
    this._onRefreshRejected = onRefreshRejected;
  }

  register(options = {}) {
    if (options.requestDelegate) return super.register(options);
    const refresh = super.register({ ...options, requestDelegate: { onReject: (response) => this._onRefreshRejected(response) } });
    // A refresh that meets a REGISTER already in flight is dropped: that one carries the same
    // binding.
    refresh.catch(() => {});
    return refresh;
  }
}

export class Device extends EventEmitter {
  constructor(token, options = {}) {
    super();
    if (typeof token !== 'string') throw new TypeError('Device requires an Access Token string');
    this._options = { ...options };
    this._server = options.server || defaultServer();
    this._sipHost = hostOf(this._server) || (typeof location !== 'undefined' ? location.hostname : '') || 'dialtone.invalid';
    this._tokenRefreshMs = typeof options.tokenRefreshMs === 'number' ? options.tokenRefreshMs : DEFAULT_TOKEN_REFRESH_MS;
    this._state = State.Unregistered;
    this._calls = [];
    this._presence = PRESENCES.includes(options.presence) ? options.presence : 'available';
    this._userAgent = null;
    this._registerer = null;
    this._connected = false;
    this._wantRegistered = false;
    this._registerQueue = Promise.resolve();
    this._reconnectTimer = null;
    this._reconnectDelay = RECONNECT_MIN_MS;
    this._tokenTimers = [];
    this._setToken(token);
  }

  static get State() {
    return State;
  }

  static get version() {
    return VERSION;
  }

  get state() {
    return this._state;
  }

  get identity() {
    return this._tokenInfo ? this._tokenInfo.identity : '';
  }

  get token() {
    return this._token;
  }

  get calls() {
    return this._calls.slice();
  }

  get isBusy() {
    return this._calls.some((call) => call.status() !== 'pending');
  }

  // Dialtone extension: 'available' or 'away'.
  get presence() {
    return this._presence;
  }

  // REGISTERs with the token (and the presence). Resolves once registered; rejects with the
  // error also emitted as 'error'.
  register() {
    if (this._state === State.Destroyed) return Promise.reject(new DialtoneError(31000, 'Device destroyed'));
    this._wantRegistered = true;
    return this._enqueueRegister(() => this._sendRegister());
  }

  // REGISTERs with expires=0. Resolves once the server answered (or there was nothing to undo).
  unregister() {
    this._wantRegistered = false;
    this._cancelReconnect();
    return this._enqueueRegister(() => this._sendUnregister());
  }

  // Dialtone extension: re-REGISTERs with `X-Dialtone-Presence` when registered; otherwise the
  // presence is kept for the next register().
  setPresence(presence) {
    if (!PRESENCES.includes(presence)) {
      return Promise.reject(new TypeError(`presence must be one of ${PRESENCES.join(', ')}`));
    }
    this._presence = presence;
    if (this._state === State.Registered || this._state === State.Registering) return this.register();
    return Promise.resolve();
  }

  // The new token is used for the next INVITE and, when registered, re-REGISTERed at once.
  // Calls in progress are left alone. The identity must stay the same (make a new Device to
  // change it).
  updateToken(token) {
    if (typeof token !== 'string') throw new TypeError('updateToken requires an Access Token string');
    if (this._state === State.Destroyed) return;
    this._setToken(token);
    if (this._state === State.Registered || this._state === State.Registering) {
      this._enqueueRegister(() => this._sendRegister()).catch(() => {});
    }
  }

  // Places a call: INVITE sip:<params.To or "app">@host. Resolves with the Call as soon as the
  // INVITE is on its way; listen for 'accept', 'disconnect', 'error' on it.
  async connect(options = {}) {
    if (this._state === State.Destroyed) throw new DialtoneError(31000, 'Device destroyed');
    const invalid = this._tokenProblem();
    if (invalid) {
      this.emit('error', invalid);
      throw invalid;
    }
    await this._connect();
    const params = {};
    for (const [name, value] of Object.entries(options.params || {})) {
      if (value !== undefined && value !== null) params[name] = String(value);
    }
    const target = UserAgent.makeURI(`sip:${escapeUser(params.To || 'app')}@${this._sipHost}`);
    if (!target) throw new DialtoneError(31000, `Cannot call ${params.To}`);
    const extraHeaders = [`Authorization: Bearer ${this._token}`];
    const encoded = new URLSearchParams(params).toString();
    if (encoded) extraHeaders.push(`X-Dialtone-Params: ${encoded}`);
    const constraints = {
      audio: options.rtcConstraints && options.rtcConstraints.audio !== undefined ? options.rtcConstraints.audio : true,
      video: false,
    };
    const inviter = new Inviter(this._userAgent, target, {
      extraHeaders,
      earlyMedia: true,
      sessionDescriptionHandlerOptions: { constraints },
    });
    const call = new Call(this, inviter, {
      direction: Call.CallDirection.Outgoing,
      parameters: {},
      customParameters: new Map(Object.entries(params)),
      constraints,
    });
    this._calls.push(call);
    inviter
      .invite({
        requestDelegate: {
          onProgress: (response) => call._handleProgress(response.message),
          onAccept: (response) => call._handleAccepted(response.message),
          onReject: (response) => call._handleRejected(response.message),
        },
      })
      .catch((err) => call._fail(mediaOrGeneral(err)));
    return call;
  }

  disconnectAll() {
    for (const call of this._calls.slice()) call.disconnect();
  }

  // Hangs up, unregisters (best effort) and closes the WebSocket. The Device is unusable after.
  destroy() {
    if (this._state === State.Destroyed) return;
    this.disconnectAll();
    this._clearTokenTimers();
    this._cancelReconnect();
    this._wantRegistered = false;
    const wasRegistered = this._state === State.Registered;
    this._state = State.Destroyed;
    const ua = this._userAgent;
    if (ua) {
      // Unregister ourselves first: SIP.js's stop() would send the expires=0 REGISTER without
      // the token.
      const registerer = this._registerer;
      const unregistered =
        registerer && this._connected && registerer.state === RegistererState.Registered ? this._sendUnregister() : Promise.resolve();
      unregistered
        .catch(() => {})
        .then(() => ua.stop())
        .catch(() => {});
    }
    if (wasRegistered) this.emit('unregistered');
    this.emit('destroyed');
  }

  _setToken(token) {
    this._token = token;
    this._tokenInfo = decodeToken(token);
    this._scheduleTokenTimers();
  }

  _tokenProblem() {
    if (!this._tokenInfo) return new DialtoneError(20101, 'Invalid Access Token: not a JWT');
    if (!this._tokenInfo.identity) return new DialtoneError(20106, 'Invalid Access Token grants: no identity');
    return null;
  }

  _clearTokenTimers() {
    for (const timer of this._tokenTimers) clearTimeout(timer);
    this._tokenTimers = [];
  }

  // 'tokenWillExpire' `tokenRefreshMs` before `exp` (at once if that moment has passed),
  // 'tokenExpired' at `exp`.
  _scheduleTokenTimers() {
    this._clearTokenTimers();
    const exp = this._tokenInfo && this._tokenInfo.exp;
    if (!exp) return;
    const left = exp * 1000 - Date.now();
    const later = (ms, fn) => this._tokenTimers.push(setTimeout(fn, Math.min(Math.max(ms, 0), MAX_TIMER_MS)));
    if (left > 0) later(left - this._tokenRefreshMs, () => this.emit('tokenWillExpire', this));
    later(left, () => this.emit('tokenExpired', this));
  }

  _setState(state) {
    if (this._state === state || this._state === State.Destroyed) return;
    this._state = state;
    this.emit(state);
  }

  _enqueueRegister(op) {
    const run = this._registerQueue.then(op, op);
    this._registerQueue = run.catch(() => {});
    return run;
  }

  _registerHeaders() {
    return [`Authorization: Bearer ${this._token}`, `X-Dialtone-Presence: ${this._presence}`];
  }

  _ensureUserAgent() {
    if (this._userAgent) return this._userAgent;
    const uri = UserAgent.makeURI(`sip:${escapeUser(this.identity || 'anonymous')}@${this._sipHost}`);
    const rtcConfiguration = { ...(this._options.rtcConfiguration || {}) };
    if (!rtcConfiguration.iceServers) rtcConfiguration.iceServers = this._options.iceServers || [];
    const debug = this._options.logLevel === 'debug' || this._options.logLevel === 'trace' || this._options.logLevel === 0 || this._options.logLevel === 1;
    this._userAgent = new UserAgent({
      uri,
      transportOptions: { server: this._server, traceSip: debug },
      userAgentString: `dialtone.js/${VERSION} SIP.js/${__SIPJS_VERSION__}`,
      logBuiltinEnabled: false,
      logLevel: debug ? 'debug' : 'error',
      logConnector: (level, category, label, content) => {
        if (debug) console.debug(`[dialtone] ${category}${label ? ' ' + label : ''}: ${content}`);
      },
      noAnswerTimeout: 120,
      sessionDescriptionHandlerFactoryOptions: {
        // Host candidates only by default: Dialtone is ICE-lite and reachable directly.
        iceGatheringTimeout: 2000,
        peerConnectionConfiguration: rtcConfiguration,
      },
      delegate: {
        onConnect: () => {
          this._connected = true;
          this._reconnectDelay = RECONNECT_MIN_MS;
        },
        onDisconnect: (error) => this._handleDisconnect(error),
        onInvite: (invitation) => this._handleInvite(invitation),
      },
    });
    return this._userAgent;
  }

  async _connect() {
    const ua = this._ensureUserAgent();
    if (ua.isConnected()) return;
    try {
      if (ua.state !== UserAgentState.Started) await ua.start();
      else await ua.reconnect();
    } catch (err) {
      const error = new DialtoneError(31009, `Could not connect to ${this._server}`, err);
      throw error;
    }
  }

  _ensureRegisterer() {
    if (this._registerer) return this._registerer;
    const registerer = new RefreshingRegisterer(
      this._userAgent,
      { expires: REGISTER_EXPIRES_S, refreshFrequency: REGISTER_REFRESH_PERCENT, extraHeaders: this._registerHeaders() },
      (response) => this._handleRegisterError(errorFromResponse(response.message)),
    );
    // The binding can also end without a reply of ours to wait for: it expired, or a refresh
    // was refused.
    registerer.stateChange.addListener((state) => {
      if (state === RegistererState.Unregistered && this._state === State.Registered) this._setState(State.Unregistered);
    });
    this._registerer = registerer;
    return registerer;
  }

  async _sendRegister() {
    if (this._state === State.Destroyed) throw new DialtoneError(31000, 'Device destroyed');
    const invalid = this._tokenProblem();
    if (invalid) {
      this._handleRegisterError(invalid);
      throw invalid;
    }
    if (this._state !== State.Registered) this._setState(State.Registering);
    try {
      await this._connect();
    } catch (error) {
      this._handleRegisterError(error);
      throw error;
    }
    const registerer = this._ensureRegisterer();
    await waitUntilIdle(registerer);
    try {
      await new Promise((resolve, reject) => {
        // A response SIP.js drops (no Contact for us, no expires) ends in Unregistered with no
        // delegate call. A refusal also passes through Unregistered, just before onReject, so
        // this generic error waits a tick to let the specific one win.
        const onState = (state) => {
          if (state === RegistererState.Unregistered) {
            setTimeout(() => reject(new DialtoneError(31000, 'The REGISTER was not accepted')));
          }
        };
        registerer.stateChange.addListener(onState);
        const finish = (fn) => (value) => {
          registerer.stateChange.removeListener(onState);
          fn(value);
        };
        registerer
          .register({
            requestOptions: { extraHeaders: this._registerHeaders() },
            requestDelegate: {
              onAccept: finish(() => resolve()),
              onReject: finish((response) => reject(errorFromResponse(response.message))),
            },
          })
          .catch(finish(reject));
      });
    } catch (error) {
      const dialtoneError = error instanceof DialtoneError ? error : new DialtoneError(31000, error && error.message, error);
      this._handleRegisterError(dialtoneError);
      throw dialtoneError;
    }
    if (this._state === State.Destroyed) return;
    this._setState(State.Registered);
  }

  async _sendUnregister() {
    const registerer = this._registerer;
    if (registerer && this._connected && registerer.state === RegistererState.Registered) {
      await waitUntilIdle(registerer);
      await new Promise((resolve) => {
        registerer
          .unregister({
            requestOptions: { extraHeaders: [`Authorization: Bearer ${this._token}`] },
            requestDelegate: { onAccept: () => resolve(), onReject: () => resolve() },
          })
          .catch(() => resolve());
      });
    }
    this._setState(State.Unregistered);
  }

  _handleRegisterError(error) {
    if (this._state === State.Registering || this._state === State.Registered) this._setState(State.Unregistered);
    this.emit('error', error);
  }

  _handleCallError(error, call) {
    this.emit('error', error, call);
  }

  _handleDisconnect(error) {
    const wasConnected = this._connected;
    this._connected = false;
    if (!error || !wasConnected || this._state === State.Destroyed) return;
    if (this._state === State.Registered || this._state === State.Registering) this._setState(State.Unregistered);
    this.emit('error', new DialtoneError(31005, 'The WebSocket to Dialtone closed unexpectedly', error));
    if (this._wantRegistered) this._scheduleReconnect();
  }

  _scheduleReconnect() {
    if (this._reconnectTimer || this._state === State.Destroyed) return;
    const delay = this._reconnectDelay;
    this._reconnectDelay = Math.min(this._reconnectDelay * 2, RECONNECT_MAX_MS);
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      if (!this._wantRegistered || this._state === State.Destroyed) return;
      this._connect()
        .then(() => this.register())
        .catch(() => this._scheduleReconnect());
    }, delay);
  }

  _cancelReconnect() {
    if (this._reconnectTimer) clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
  }

  _handleInvite(invitation) {
    if (this._state === State.Destroyed) {
      invitation.reject({ statusCode: 480 }).catch(() => {});
      return;
    }
    if (this.isBusy && !this._options.allowIncomingWhileBusy) {
      invitation.reject({ statusCode: 486 }).catch(() => {});
      return;
    }
    const request = invitation.request;
    const header = (name) => (request.getHeader(name) || '').trim();
    const parameters = {
      CallSid: header('X-Dialtone-Call-Sid'),
      AccountSid: header('X-Dialtone-Account-Sid'),
      From: header('X-Dialtone-From') || (request.from && request.from.uri ? request.from.uri.user || '' : ''),
      To: header('X-Dialtone-To') || `client:${this.identity}`,
    };
    const customParameters = new Map(new URLSearchParams(header('X-Dialtone-Params')));
    const call = new Call(this, invitation, {
      direction: Call.CallDirection.Incoming,
      parameters,
      customParameters,
    });
    this._calls.push(call);
    this.emit('incoming', call);
  }

  _removeCall(call) {
    const i = this._calls.indexOf(call);
    if (i >= 0) this._calls.splice(i, 1);
  }
}

// RFC 3261 10.2: one REGISTER at a time per binding.
function waitUntilIdle(registerer) {
  if (!registerer.waiting) return Promise.resolve();
  return new Promise((resolve) => {
    const onChange = (waiting) => {
      if (!waiting) {
        registerer.waitingChange.removeListener(onChange);
        resolve();
      }
    };
    registerer.waitingChange.addListener(onChange);
  });
}
