// The "call us" page: one outgoing call from the visitor's browser to the company's app.
// URL: ?token=<jwt> or ?tokenUrl=<url returning {"token": ...} or the bare token>,
//      ?to=<number or app name> (params.To), ?p.<name>=<value> (any other param).
(function () {
  'use strict';

  const query = new URLSearchParams(location.search);
  const $ = (id) => document.getElementById(id);
  const els = {
    status: $('status'),
    timer: $('timer'),
    call: $('call'),
    hangup: $('hangup'),
    mute: $('mute'),
    digits: $('digits'),
    keys: Array.from(document.querySelectorAll('#keypad [data-digit]')),
  };
  // For tests and for whoever embeds the page.
  const page = (window.dialtonePage = { device: null, call: null });

  // A fetched token is fetched again when it has less than this left.
  const TOKEN_MARGIN_MS = 60000;
  let tokenExp = 0;
  let timer = null;

  function say(text) {
    els.status.textContent = text;
  }

  function setState(state) {
    document.body.dataset.state = state;
    const inCall = state === 'in-call';
    const busy = state === 'connecting' || inCall;
    els.call.hidden = busy;
    els.hangup.hidden = !busy;
    els.mute.disabled = !inCall;
    for (const key of els.keys) key.disabled = !inCall;
    if (!inCall) {
      els.mute.setAttribute('aria-pressed', 'false');
      els.mute.textContent = 'Mute';
    }
    els.call.innerHTML = '<span aria-hidden="true" class="icon">&#x260E;</span> ' + (state === 'ended' ? 'Call again' : 'Call');
  }

  function callParams() {
    const params = {};
    const to = query.get('to');
    if (to) params.To = to;
    for (const [name, value] of query) {
      if (name.startsWith('p.') && name.length > 2) params[name.slice(2)] = value;
    }
    return params;
  }

  function expiryOf(token) {
    try {
      const payload = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
      return typeof payload.exp === 'number' ? payload.exp * 1000 : 0;
    } catch (_) {
      return 0;
    }
  }

  async function fetchToken() {
    const inline = query.get('token');
    if (inline) return inline;
    const url = query.get('tokenUrl');
    if (!url) throw new Error('This page needs a ?token= or ?tokenUrl= parameter.');
    const response = await fetch(url, { credentials: 'same-origin', cache: 'no-store' });
    if (!response.ok) throw new Error(`Could not get a call token (HTTP ${response.status}).`);
    const text = (await response.text()).trim();
    try {
      const json = JSON.parse(text);
      if (json && typeof json.token === 'string') return json.token;
    } catch (_) {
      // Not JSON: the body is the token itself.
    }
    return text;
  }

  async function freshToken() {
    const token = await fetchToken();
    tokenExp = expiryOf(token);
    return token;
  }

  function describe(error) {
    switch (error && error.code) {
      case 31208:
      case 31201:
        return 'We could not use your microphone. Allow microphone access for this page and try again.';
      case 20104:
        return 'This call link has expired. Reload the page and try again.';
      case 31005:
      case 31009:
        return 'We could not reach our phone service. Check your connection and try again.';
      case 31486:
        return 'All our lines are busy. Please try again in a moment.';
      default:
        return `The call could not be completed: ${(error && error.message) || 'unknown error'}.`;
    }
  }

  function startTimer() {
    const started = Date.now();
    const tick = () => {
      const s = Math.floor((Date.now() - started) / 1000);
      els.timer.textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
    };
    tick();
    timer = setInterval(tick, 1000);
  }

  function stopTimer() {
    if (timer) clearInterval(timer);
    timer = null;
  }

  async function placeCall() {
    if (page.call) return;
    setState('connecting');
    say('Connecting…');
    els.digits.value = '';
    els.timer.textContent = '';
    try {
      if (query.get('tokenUrl') && tokenExp && tokenExp - Date.now() < TOKEN_MARGIN_MS) {
        page.device.updateToken(await freshToken());
      }
      const call = await page.device.connect({ params: callParams() });
      page.call = call;
      let failed = false;
      call.on('ringing', () => say('Ringing…'));
      call.on('accept', () => {
        setState('in-call');
        say('Connected. Use the keypad when you are asked for a number.');
        startTimer();
      });
      call.on('error', (error) => {
        failed = true;
        say(describe(error));
      });
      call.on('disconnect', () => {
        page.call = null;
        stopTimer();
        setState('ended');
        if (!failed) say('Call ended. Thank you for calling.');
      });
    } catch (error) {
      page.call = null;
      setState('ended');
      say(describe(error));
    }
  }

  function sendDigit(digit) {
    if (!page.call || document.body.dataset.state !== 'in-call') return;
    page.call.sendDigits(digit);
    els.digits.value += digit;
  }

  els.call.addEventListener('click', placeCall);
  els.hangup.addEventListener('click', () => {
    if (page.call) page.call.disconnect();
  });
  els.mute.addEventListener('click', () => {
    if (!page.call) return;
    const muted = !page.call.isMuted();
    page.call.mute(muted);
    els.mute.setAttribute('aria-pressed', String(muted));
    els.mute.textContent = muted ? 'Unmute' : 'Mute';
    say(muted ? 'Your microphone is muted.' : 'Your microphone is on.');
  });
  for (const key of els.keys) {
    key.addEventListener('click', () => sendDigit(key.dataset.digit));
  }
  // Digits typed anywhere on the page go to the call too.
  document.addEventListener('keydown', (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (/^[0-9*#]$/.test(event.key) && document.body.dataset.state === 'in-call') {
      const key = els.keys.find((k) => k.dataset.digit === event.key);
      if (key) key.classList.add('pressed');
      setTimeout(() => key && key.classList.remove('pressed'), 150);
      sendDigit(event.key);
      event.preventDefault();
    }
  });

  async function init() {
    setState('idle');
    if (!window.Dialtone) {
      say('The calling library did not load. Reload the page to try again.');
      return;
    }
    let token;
    try {
      token = await freshToken();
    } catch (error) {
      say(error.message);
      return;
    }
    const device = new window.Dialtone.Device(token, { closeProtection: true });
    page.device = device;
    device.on('tokenWillExpire', async () => {
      if (!query.get('tokenUrl')) return;
      try {
        device.updateToken(await freshToken());
      } catch (_) {
        // Fetched again before the next call.
      }
    });
    els.call.disabled = false;
    say('Press Call to talk to us.');
  }

  init();
})();
