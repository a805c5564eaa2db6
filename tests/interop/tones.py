"""Tones for the conference and queue tests: make a WAV of one frequency, and measure how much of a
frequency a recording holds (Goertzel filter), so a test can tell which peers a peer heard."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import audio

RATE = audio.RATE


def make_tone(path: Path, freq: float, seconds: float, volume: float = 0.3) -> Path:
    """A sine of `freq` Hz, 8 kHz mono 16-bit, at `volume` of full scale."""
    audio.require_tools()
    subprocess.run(["sox", "-n", "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer",
                    str(path), "synth", str(seconds), "sine", str(freq), "vol", str(volume)],
                   check=True, capture_output=True)
    return path


def level_db(samples, freq: float) -> float:
    """The level of `freq` in `samples` (a sequence of 16-bit ints) in dBFS, as the RMS of a sine
    of that frequency alone would read: -100 for none at all."""
    n = len(samples)
    if n == 0:
        return -100.0
    w = 2.0 * math.pi * freq / RATE
    coeff = 2.0 * math.cos(w)
    s1 = s2 = 0.0
    for x in samples:
        s0 = x / 32768.0 + coeff * s1 - s2
        s2, s1 = s1, s0
    power = max(s1 * s1 + s2 * s2 - coeff * s1 * s2, 0.0)
    amplitude = 2.0 * math.sqrt(power) / n
    rms = amplitude / math.sqrt(2.0)
    return max(20.0 * math.log10(rms), -100.0) if rms > 0 else -100.0


def window(samples, start_s: float, end_s: float):
    """The samples between two offsets in seconds (clipped to the recording)."""
    a = max(0, int(start_s * RATE))
    b = max(a, min(len(samples), int(end_s * RATE)))
    return samples[a:b]


def levels(samples, freqs: dict[str, float]) -> dict[str, float]:
    return {name: round(level_db(samples, f), 1) for name, f in freqs.items()}
