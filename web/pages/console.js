// The agent console: sign in with a SIP credential, take calls with a screen pop, see recent
// calls. The password is kept in memory only, to sign in again silently before the token
// expires.
(function () {
  'use strict';

  const $ = (id) => document.getElementById(id);
  const els = {
    status: $('status'),
    agent: $('agent'),
    identity: $('identity'),
    presence: $('presence'),
    signout: $('signout'),
    login: $('login'),
    loginForm: $('login-form'),
    loginError: $('login-error'),
    loginSubmit: $('login-submit'),
    username: $('username'),
    password: $('password'),
    domain: $('domain'),
    workspace: $('workspace'),
    callTitle: $('call-title'),
    idleNote: $('idle-note'),
    caller: $('caller'),
    callTimer: $('call-timer'),
    screenPop: $('screen-pop'),
    popParams: $('pop-params'),
    crm: $('crm'),
    crmLink: $('crm-link'),
    crmMissing: $('crm-missing'),
    crmAuto: $('crm-auto'),
    ringActions: $('ring-actions'),
    accept: $('accept'),
    reject: $('reject'),
    callControls: $('call-controls'),
    hold: $('hold'),
    mute: $('mute'),
    hangup: $('hangup'),
    digits: $('digits'),
    keys: Array.from(document.querySelectorAll('#call-controls [data-digit]')),
    refresh: $('refresh'),
    callsBody: $('calls-body'),
    callsEmpty: $('calls-empty'),
  };

  // The session: what the login returned, and the credentials to renew it.
  let session = null; // {token, identity, accountSid, crmTemplate, credentials: {username, password, domain}}
  let timer = null;
  let ringer = null;
  const page = (window.dialtonePage = {
    device: null,
    call: null,
    // Test hook: the screen pop for any object shaped like a Call (parameters,
    // customParameters, on(), accept(), reject(), disconnect()).
    handleIncoming: (call) => handleIncoming(call),
  });

  const AUTO_OPEN_KEY = 'dialtone.console.crmAutoOpen';

  function say(text) {
    els.status.textContent = text;
  }

  function setState(state) {
    document.body.dataset.state = state;
    const signedIn = state !== 'signed-out';
    els.login.hidden = signedIn;
    els.workspace.hidden = !signedIn;
    els.agent.hidden = !signedIn;
    els.ringActions.hidden = state !== 'ringing';
    els.callControls.hidden = state !== 'in-call';
    els.idleNote.hidden = state === 'ringing' || state === 'in-call';
    if (state === 'ready') {
      els.callTitle.textContent = 'No call';
      els.caller.hidden = true;
      els.callTimer.hidden = true;
      els.screenPop.hidden = true;
    }
  }

  // ---- sign in, token renewal, sign out ----

  async function login(credentials) {
    const form = new URLSearchParams({ username: credentials.username, password: credentials.password });
    if (credentials.domain) form.set('domain', credentials.domain);
    const response = await fetch('/console/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: form.toString(),
      credentials: 'same-origin',
      cache: 'no-store',
    });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok || !body || typeof body.token !== 'string') {
      const message = body && body.message ? body.message : `Sign-in failed (HTTP ${response.status}).`;
      const error = new Error(response.status === 401 ? 'Wrong username or password.' : message);
      error.status = response.status;
      throw error;
    }
    return {
      token: body.token,
      identity: body.identity || '',
      accountSid: body.account_sid || '',
      crmTemplate: typeof body.crm_url_template === 'string' && body.crm_url_template ? body.crm_url_template : null,
      credentials,
    };
  }

  async function signIn(event) {
    event.preventDefault();
    els.loginError.textContent = '';
    const credentials = {
      username: els.username.value.trim(),
      password: els.password.value,
      domain: els.domain.value.trim(),
    };
    if (!credentials.username || !credentials.password) {
      els.loginError.textContent = 'Enter your username and password.';
      (credentials.username ? els.password : els.username).focus();
      return;
    }
    els.loginSubmit.disabled = true;
    say('Signing in…');
    try {
      session = await login(credentials);
    } catch (error) {
      els.loginSubmit.disabled = false;
      els.loginError.textContent = error.message;
      say('');
      els.password.focus();
      return;
    }
    els.loginSubmit.disabled = false;
    els.password.value = '';
    ringer = new Ringer();
    startDevice();
    els.identity.textContent = session.identity || page.device.identity;
    els.presence.value = 'available';
    setState('ready');
    say('Connecting…');
    els.callTitle.focus();
    try {
      await page.device.register();
      say('You are available for calls.');
    } catch (error) {
      els.presence.value = 'offline';
      say(`You are signed in but cannot take calls: ${error.message}`);
    }
    loadCalls();
  }

  function startDevice() {
    const device = new window.Dialtone.Device(session.token, { closeProtection: true });
    page.device = device;
    device.on('incoming', handleIncoming);
    device.on('error', (error) => {
      if (page.call) return; // the call's own handler says it
      say(`Problem: ${error.message} (${error.code}).`);
    });
    device.on('unregistered', () => {
      if (els.presence.value !== 'offline' && document.body.dataset.state !== 'signed-out') {
        els.presence.value = 'offline';
        say('You are offline: calls will not ring here.');
      }
    });
    device.on('tokenWillExpire', renewToken);
  }

  async function renewToken() {
    if (!session) return;
    try {
      const renewed = await login(session.credentials);
      session = renewed;
      page.device.updateToken(renewed.token);
    } catch (error) {
      say(`Could not renew your session: ${error.message} Sign in again soon.`);
    }
  }

  function signOut() {
    if (page.call) page.call.disconnect();
    if (page.device) page.device.destroy();
    if (ringer) ringer.close();
    ringer = null;
    page.device = null;
    page.call = null;
    session = null;
    stopTimer();
    els.callsBody.textContent = '';
    setState('signed-out');
    say('You are signed out.');
    els.username.focus();
  }

  async function changePresence() {
    const value = els.presence.value;
    const device = page.device;
    if (!device) return;
    try {
      if (value === 'offline') {
        await device.unregister();
        say('You are offline: calls will not ring here.');
      } else {
        await device.setPresence(value);
        if (device.state !== 'registered') await device.register();
        say(value === 'available' ? 'You are available for calls.' : 'You are away: calls will not ring here.');
      }
    } catch (error) {
      say(`Could not change your status: ${error.message}`);
    }
  }

  // ---- the call ----

  function handleIncoming(call) {
    if (page.call) {
      if (typeof call.reject === 'function') call.reject();
      return;
    }
    page.call = call;
    const from = (call.parameters && call.parameters.From) || 'unknown caller';
    els.callTitle.textContent = 'Incoming call';
    els.caller.textContent = `From ${from}`;
    els.caller.hidden = false;
    els.callTimer.hidden = true;
    renderScreenPop(call);
    setState('ringing');
    say(`Incoming call from ${from}.`);
    if (ringer) ringer.start();
    els.accept.focus();

    call.on('accept', () => {
      if (ringer) ringer.stop();
      els.callTitle.textContent = 'On call';
      setState('in-call');
      setToggle(els.hold, false, 'Hold', 'Resume');
      setToggle(els.mute, false, 'Mute', 'Unmute');
      els.digits.value = '';
      startTimer();
      say(`Connected to ${from}.`);
      els.hangup.focus();
    });
    const ended = (text) => () => {
      if (ringer) ringer.stop();
      if (page.call === call) page.call = null;
      stopTimer();
      setState('ready');
      say(text);
      els.callTitle.focus();
      setTimeout(loadCalls, 1000);
    };
    call.on('cancel', ended(`Missed call from ${from}.`));
    call.on('reject', ended(`Rejected the call from ${from}.`));
    call.on('disconnect', ended(`Call with ${from} ended.`));
    call.on('error', (error) => say(`Call problem: ${error.message} (${error.code}).`));
  }

  function paramRow(name, value) {
    const dt = document.createElement('dt');
    dt.textContent = name;
    const dd = document.createElement('dd');
    dd.dataset.param = name;
    dd.textContent = value;
    return [dt, dd];
  }

  function renderScreenPop(call) {
    els.popParams.textContent = '';
    const parameters = call.parameters || {};
    const custom = call.customParameters instanceof Map ? call.customParameters : new Map(Object.entries(call.customParameters || {}));
    for (const [name, value] of Object.entries(parameters)) els.popParams.append(...paramRow(name, String(value)));
    for (const [name, value] of custom) els.popParams.append(...paramRow(name, String(value)));
    els.screenPop.hidden = false;

    const url = session && session.crmTemplate ? crmUrl(session.crmTemplate, parameters, custom) : null;
    els.crm.hidden = !url || !url.href;
    els.crmMissing.hidden = !url || !!url.href;
    if (url && url.href) els.crmLink.href = url.href;
    else els.crmLink.removeAttribute('href');
    if (url && !url.href) els.crmMissing.textContent = `No customer record link: this call has no ${url.missing.join(', ')}.`;
  }

  // `{Name}` placeholders take the call's custom parameter of that name, else its parameter,
  // URL-encoded. A template with a placeholder the call cannot fill gives no link.
  function crmUrl(template, parameters, custom) {
    const missing = [];
    const href = template.replace(/\{([^{}]+)\}/g, (_, name) => {
      const value = custom.has(name) ? custom.get(name) : parameters[name];
      if (value === undefined || value === null || value === '') {
        missing.push(name);
        return '';
      }
      return encodeURIComponent(String(value));
    });
    if (missing.length) return { href: null, missing };
    try {
      const parsed = new URL(href, location.href);
      if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') return { href: null, missing: ['safe link'] };
      return { href: parsed.href, missing };
    } catch (_) {
      return { href: null, missing: ['valid link'] };
    }
  }

  function acceptCall() {
    const call = page.call;
    if (!call) return;
    // Opened here, in the click, so the browser does not block the new tab.
    if (els.crmAuto.checked && !els.crm.hidden && els.crmLink.href) {
      window.open(els.crmLink.href, '_blank', 'noopener');
    }
    say('Connecting…');
    call.accept();
  }

  function setToggle(button, on, offLabel, onLabel) {
    button.setAttribute('aria-pressed', String(on));
    button.textContent = on ? onLabel : offLabel;
  }

  async function toggleHold() {
    const call = page.call;
    if (!call || typeof call.hold !== 'function') return;
    const held = els.hold.getAttribute('aria-pressed') !== 'true';
    setToggle(els.hold, held, 'Hold', 'Resume');
    els.hold.disabled = true;
    try {
      await call.hold(held);
      say(held ? 'The caller is on hold.' : 'The call is resumed.');
    } catch (error) {
      setToggle(els.hold, !held, 'Hold', 'Resume');
      say(`Could not change hold: ${error.message}`);
    } finally {
      els.hold.disabled = false;
    }
  }

  function toggleMute() {
    const call = page.call;
    if (!call) return;
    const muted = !call.isMuted();
    call.mute(muted);
    setToggle(els.mute, muted, 'Mute', 'Unmute');
    say(muted ? 'Your microphone is muted.' : 'Your microphone is on.');
  }

  function sendDigit(digit) {
    if (!page.call || document.body.dataset.state !== 'in-call') return;
    page.call.sendDigits(digit);
    els.digits.value += digit;
  }

  function startTimer() {
    stopTimer();
    const started = Date.now();
    els.callTimer.hidden = false;
    const tick = () => {
      const s = Math.floor((Date.now() - started) / 1000);
      els.callTimer.textContent = formatDuration(s);
    };
    tick();
    timer = setInterval(tick, 1000);
  }

  function stopTimer() {
    if (timer) clearInterval(timer);
    timer = null;
  }

  // ---- recent calls ----

  function formatDuration(seconds) {
    const s = Number(seconds) || 0;
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const rest = String(s % 60).padStart(2, '0');
    return h ? `${h}:${String(m).padStart(2, '0')}:${rest}` : `${m}:${rest}`;
  }

  function formatStart(value) {
    if (!value) return '';
    const date = new Date(value);
    if (Number.isNaN(date.getTime())) return String(value);
    return date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  }

  async function loadCalls() {
    if (!session) return;
    let body;
    try {
      const response = await fetch('/console/calls', {
        headers: { Authorization: `Bearer ${session.token}` },
        cache: 'no-store',
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      body = await response.json();
    } catch (error) {
      say(`Could not load recent calls: ${error.message}`);
      return;
    }
    const calls = Array.isArray(body && body.calls) ? body.calls : [];
    els.callsBody.textContent = '';
    for (const call of calls) {
      const tr = document.createElement('tr');
      // Explicit roles: the narrow layout restyles cells as blocks, which can drop the
      // implicit table semantics in some browsers.
      tr.setAttribute('role', 'row');
      const cells = [
        ['From', call.from || call.from_formatted || ''],
        ['To', call.to || call.to_formatted || ''],
        ['Status', call.status || ''],
        ['Duration', call.duration === null || call.duration === undefined ? '' : formatDuration(call.duration)],
        ['Start', formatStart(call.start_time)],
      ];
      for (const [label, text] of cells) {
        const td = document.createElement('td');
        td.dataset.label = label;
        td.setAttribute('role', 'cell');
        td.textContent = text;
        tr.append(td);
      }
      els.callsBody.append(tr);
    }
    els.callsEmpty.hidden = calls.length > 0;
  }

  // A ring the agent can hear: 440+480 Hz, 2 s on, 4 s off. Its AudioContext is made in the
  // sign-in click so the browser lets it play later.
  function Ringer() {
    const AudioCtx = window.AudioContext || window.webkitAudioContext;
    this.context = AudioCtx ? new AudioCtx() : null;
    this.gain = null;
    this.interval = null;
  }
  Ringer.prototype.start = function () {
    if (!this.context || this.interval) return;
    const ring = () => {
      const ctx = this.context;
      if (this.gain) this.gain.disconnect();
      const gain = ctx.createGain();
      gain.gain.value = 0.08;
      gain.connect(ctx.destination);
      const now = ctx.currentTime;
      for (const f of [440, 480]) {
        const osc = ctx.createOscillator();
        osc.frequency.value = f;
        osc.connect(gain);
        osc.start(now);
        osc.stop(now + 2);
      }
      this.gain = gain;
    };
    if (this.context.state === 'suspended') this.context.resume().catch(() => {});
    ring();
    this.interval = setInterval(ring, 6000);
  };
  Ringer.prototype.stop = function () {
    if (this.interval) clearInterval(this.interval);
    this.interval = null;
    if (this.gain) this.gain.disconnect();
    this.gain = null;
  };
  Ringer.prototype.close = function () {
    this.stop();
    if (this.context) this.context.close().catch(() => {});
    this.context = null;
  };

  // ---- wiring ----

  els.loginForm.addEventListener('submit', signIn);
  els.signout.addEventListener('click', signOut);
  els.presence.addEventListener('change', changePresence);
  els.accept.addEventListener('click', acceptCall);
  els.reject.addEventListener('click', () => page.call && page.call.reject());
  els.hangup.addEventListener('click', () => page.call && page.call.disconnect());
  els.hold.addEventListener('click', toggleHold);
  els.mute.addEventListener('click', toggleMute);
  els.refresh.addEventListener('click', loadCalls);
  for (const key of els.keys) key.addEventListener('click', () => sendDigit(key.dataset.digit));
  document.addEventListener('keydown', (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target && (target.tagName === 'INPUT' || target.tagName === 'SELECT' || target.tagName === 'TEXTAREA')) return;
    if (/^[0-9*#]$/.test(event.key) && document.body.dataset.state === 'in-call') {
      sendDigit(event.key);
      event.preventDefault();
    }
  });
  try {
    els.crmAuto.checked = localStorage.getItem(AUTO_OPEN_KEY) === '1';
  } catch (_) {
    // Storage blocked: the option starts off.
  }
  els.crmAuto.addEventListener('change', () => {
    try {
      localStorage.setItem(AUTO_OPEN_KEY, els.crmAuto.checked ? '1' : '0');
    } catch (_) {
      // Storage blocked: the choice lasts for this page only.
    }
  });

  setState('signed-out');
  if (!window.Dialtone) say('The calling library did not load. Reload the page to try again.');
})();
