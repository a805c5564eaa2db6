// Media plumbing that a page should not have to write: the <audio> element that plays the
// far end, and the optional input/output level meter behind the Call's 'volume' event.

export class RemoteAudio {
  constructor() {
    this.element = null;
  }

  // Plays `stream`. The element is created hidden at the end of <body>; autoplay is allowed
  // because the page has already captured the microphone for the call.
  attach(stream) {
    if (typeof document === 'undefined' || !stream) return;
    if (!this.element) {
      const el = document.createElement('audio');
      el.autoplay = true;
      el.hidden = true;
      el.setAttribute('data-dialtone-remote-audio', '');
      (document.body || document.documentElement).appendChild(el);
      this.element = el;
    }
    if (this.element.srcObject !== stream) this.element.srcObject = stream;
    this.play();
  }

  // A later play() after autoplay was refused (no user gesture yet) is harmless.
  play() {
    if (!this.element) return;
    const started = this.element.play();
    if (started && typeof started.catch === 'function') started.catch(() => {});
  }

  detach() {
    if (!this.element) return;
    this.element.pause();
    this.element.srcObject = null;
    this.element.remove();
    this.element = null;
  }
}

const VOLUME_INTERVAL_MS = 50;

function level(analyser, buffer) {
  analyser.getByteTimeDomainData(buffer);
  let peak = 0;
  for (let i = 0; i < buffer.length; i++) {
    const v = Math.abs(buffer[i] - 128);
    if (v > peak) peak = v;
  }
  return peak / 128;
}

// Emits `(inputVolume, outputVolume)`, each 0..1, every 50 ms, through `onVolume`.
export class VolumeMeter {
  constructor(localStream, remoteStream, onVolume) {
    const AudioCtx = typeof window !== 'undefined' && (window.AudioContext || window.webkitAudioContext);
    if (!AudioCtx) return;
    this.context = new AudioCtx();
    const analyse = (stream) => {
      if (!stream || stream.getAudioTracks().length === 0) return null;
      const analyser = this.context.createAnalyser();
      analyser.fftSize = 256;
      this.context.createMediaStreamSource(stream).connect(analyser);
      return analyser;
    };
    const input = analyse(localStream);
    const output = analyse(remoteStream);
    const buffer = new Uint8Array(256);
    this.timer = setInterval(() => {
      onVolume(input ? level(input, buffer) : 0, output ? level(output, buffer) : 0);
    }, VOLUME_INTERVAL_MS);
  }

  stop() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.context) this.context.close().catch(() => {});
    this.context = null;
  }
}
