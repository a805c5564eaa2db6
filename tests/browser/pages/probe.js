// What a page hears, measured inside the page: a MediaStream's audio goes through WebAudio into a
// capture node that keeps the float PCM. From it come the level (RMS dBFS) of every window, the
// level of given frequencies (Goertzel), the strongest frequency (FFT peak), and a 16-bit WAV.
//
// Loaded into every page the driver opens (as an init script, so Dialtone's own pages have it
// too) as window.__probe:
//   const id = await __probe.start(stream, {freqs: [1000], window_ms: 100, keep_pcm: true});
//   const r = await __probe.stop(id);  // {sample_rate, started_at, windows, summary, wav_b64}
// Levels read as sox and tests/interop/tones.py read them: a full-scale sine is -3 dBFS.
(() => {
  if (window.__probe) return;

  const WORKLET = `
    class CaptureProcessor extends AudioWorkletProcessor {
      constructor() { super(); this.buf = new Float32Array(2048); this.n = 0; }
      process(inputs) {
        const ch = inputs[0] && inputs[0][0];
        // No input connected yet: a block of silence keeps the timeline honest.
        const block = ch || new Float32Array(128);
        for (let i = 0; i < block.length; i++) {
          this.buf[this.n++] = block[i];
          if (this.n === this.buf.length) { this.port.postMessage(this.buf); this.buf = new Float32Array(2048); this.n = 0; }
        }
        return true;
      }
    }
    registerProcessor("probe-capture", CaptureProcessor);`;

  function dbfs(rms) {
    return rms > 0 ? Math.max(20 * Math.log10(rms), -120) : -120;
  }

  // The level of `freq` in x as the RMS of a sine of that frequency alone would read (dBFS).
  function goertzel(x, rate, freq) {
    const n = x.length;
    if (n === 0) return -120;
    const coeff = 2 * Math.cos((2 * Math.PI * freq) / rate);
    let s1 = 0, s2 = 0;
    for (let i = 0; i < n; i++) {
      const s0 = x[i] + coeff * s1 - s2;
      s2 = s1; s1 = s0;
    }
    const power = Math.max(s1 * s1 + s2 * s2 - coeff * s1 * s2, 0);
    return dbfs((2 * Math.sqrt(power)) / n / Math.SQRT2);
  }

  // Strongest frequency of x (Hann window, radix-2 FFT of the first power-of-two samples,
  // parabolic interpolation between bins), ignoring DC and below 40 Hz.
  function peakHz(x, rate) {
    let n = 1;
    while (n * 2 <= x.length) n *= 2;
    if (n < 256) return null;
    const re = new Float64Array(n), im = new Float64Array(n);
    for (let i = 0; i < n; i++) re[i] = x[i] * (0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (n - 1)));
    for (let i = 1, j = 0; i < n; i++) {
      let bit = n >> 1;
      for (; j & bit; bit >>= 1) j ^= bit;
      j ^= bit;
      if (i < j) { [re[i], re[j]] = [re[j], re[i]]; }
    }
    for (let len = 2; len <= n; len <<= 1) {
      const ang = (-2 * Math.PI) / len, wr = Math.cos(ang), wi = Math.sin(ang);
      for (let i = 0; i < n; i += len) {
        let cr = 1, ci = 0;
        for (let k = 0; k < len / 2; k++) {
          const a = i + k, b = a + len / 2;
          const tr = re[b] * cr - im[b] * ci, ti = re[b] * ci + im[b] * cr;
          re[b] = re[a] - tr; im[b] = im[a] - ti; re[a] += tr; im[a] += ti;
          const ncr = cr * wr - ci * wi; ci = cr * wi + ci * wr; cr = ncr;
        }
      }
    }
    const mag = (k) => Math.hypot(re[k], im[k]);
    const lo = Math.max(1, Math.ceil((40 * n) / rate));
    let best = lo;
    for (let k = lo; k < n / 2; k++) if (mag(k) > mag(best)) best = k;
    if (mag(best) === 0) return null;
    let shift = 0;
    if (best > lo && best < n / 2 - 1) {
      const a = Math.log(mag(best - 1) + 1e-12), b = Math.log(mag(best) + 1e-12), c = Math.log(mag(best + 1) + 1e-12);
      const d = a - 2 * b + c;
      if (d !== 0) shift = (0.5 * (a - c)) / d;
    }
    return ((best + shift) * rate) / n;
  }

  function wavBase64(samples, rate) {
    const bytes = new Uint8Array(44 + samples.length * 2);
    const v = new DataView(bytes.buffer);
    const text = (o, s) => { for (let i = 0; i < s.length; i++) bytes[o + i] = s.charCodeAt(i); };
    text(0, "RIFF"); v.setUint32(4, 36 + samples.length * 2, true); text(8, "WAVE");
    text(12, "fmt "); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
    v.setUint32(24, rate, true); v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true);
    text(36, "data"); v.setUint32(40, samples.length * 2, true);
    for (let i = 0; i < samples.length; i++) {
      const s = Math.max(-1, Math.min(1, samples[i]));
      v.setInt16(44 + i * 2, Math.round(s * 32767), true);
    }
    let out = "";
    for (let i = 0; i < bytes.length; i += 0x8000) out += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(out);
  }

  const probes = new Map();
  let nextId = 1;

  async function start(stream, opts = {}) {
    const tracks = stream.getAudioTracks();
    if (tracks.length === 0) throw new Error("probe: the stream has no audio track");
    const freqs = opts.freqs || [];
    const windowMs = opts.window_ms || 100;
    const ctx = new AudioContext();
    // Chromium only feeds a remote WebRTC stream into WebAudio once a media element plays it.
    const sink = new Audio();
    sink.muted = true;
    sink.srcObject = stream;
    sink.play().catch(() => {});
    await ctx.resume();
    const source = ctx.createMediaStreamSource(stream);
    const mute = ctx.createGain();
    mute.gain.value = 0;
    mute.connect(ctx.destination);
    const p = {
      ctx, sink, source, mute, freqs, windowMs, keepPcm: opts.keep_pcm !== false,
      rate: ctx.sampleRate, chunks: [], pending: [], pendingLen: 0, windows: [],
      startedAt: performance.now(), track: tracks[0].label, node: null, kind: null,
    };
    const windowLen = Math.round((p.rate * windowMs) / 1000);
    const take = (chunk) => {
      if (p.keepPcm) p.chunks.push(chunk);
      p.pending.push(chunk);
      p.pendingLen += chunk.length;
      while (p.pendingLen >= windowLen) {
        const w = new Float32Array(windowLen);
        let filled = 0;
        while (filled < windowLen) {
          const head = p.pending[0];
          const n = Math.min(head.length, windowLen - filled);
          w.set(head.subarray(0, n), filled);
          filled += n;
          if (n === head.length) p.pending.shift(); else p.pending[0] = head.subarray(n);
        }
        p.pendingLen -= windowLen;
        let acc = 0;
        for (let i = 0; i < w.length; i++) acc += w[i] * w[i];
        const tones = {};
        for (const f of freqs) tones[f] = +goertzel(w, p.rate, f).toFixed(1);
        const peak = peakHz(w, p.rate);
        p.windows.push({
          t_ms: Math.round((p.windows.length * windowLen * 1000) / p.rate),
          rms_dbfs: +dbfs(Math.sqrt(acc / w.length)).toFixed(1),
          peak_hz: peak === null ? null : +peak.toFixed(1),
          tones,
        });
      }
    };
    try {
      const url = URL.createObjectURL(new Blob([WORKLET], { type: "application/javascript" }));
      await ctx.audioWorklet.addModule(url);
      p.node = new AudioWorkletNode(ctx, "probe-capture", { numberOfInputs: 1, numberOfOutputs: 1, channelCount: 1, channelCountMode: "explicit" });
      p.node.port.onmessage = (e) => take(e.data);
      p.kind = "audioworklet";
    } catch (err) {
      // A page whose CSP refuses blob: modules still gets measured, the older way.
      p.node = ctx.createScriptProcessor(2048, 1, 1);
      p.node.onaudioprocess = (e) => take(new Float32Array(e.inputBuffer.getChannelData(0)));
      p.kind = "scriptprocessor";
    }
    source.connect(p.node);
    p.node.connect(mute);
    const id = nextId++;
    probes.set(id, p);
    return id;
  }

  async function stop(id, opts = {}) {
    const p = probes.get(id);
    if (!p) throw new Error(`probe ${id} unknown`);
    probes.delete(id);
    // The last posted blocks arrive after the graph is cut: give them a moment.
    await new Promise((r) => setTimeout(r, 100));
    p.source.disconnect();
    p.node.disconnect();
    await p.ctx.close();
    p.sink.srcObject = null;
    const total = p.chunks.reduce((n, c) => n + c.length, 0);
    const pcm = new Float32Array(total);
    let o = 0;
    for (const c of p.chunks) { pcm.set(c, o); o += c.length; }
    const loud = p.windows.filter((w) => w.rms_dbfs > (opts.loud_dbfs ?? -40));
    const out = {
      sample_rate: p.rate,
      capture: p.kind,
      track_label: p.track,
      started_at: p.startedAt,
      window_ms: p.windowMs,
      seconds: +(total / p.rate).toFixed(3),
      windows: p.windows,
      summary: {
        max_rms_dbfs: p.windows.reduce((m, w) => Math.max(m, w.rms_dbfs), -120),
        loud_windows: loud.length,
        windows: p.windows.length,
      },
    };
    if (p.keepPcm) out.wav_b64 = wavBase64(pcm, p.rate);
    return out;
  }

  window.__probe = { start, stop, goertzel, peakHz };
})();
