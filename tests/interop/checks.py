"""Assertions shared by the interop tests."""

from __future__ import annotations

from pathlib import Path

import audio

SPEECH_MIN_DBFS = -35.0


def number_digits(value: str | None) -> str:
    """'+15550001111', '15550001111', 'sip:+15550001111@127.0.0.1' -> '15550001111'."""
    v = (value or "").strip()
    if v.startswith("sip:"):
        v = v[4:].split("@", 1)[0]
    return v.lstrip("+")


def assert_heard_speech(recording: Path, text: str, workdir: Path, tolerance: float = 1.0) -> audio.Speech:
    """The recording holds one spoken run of speech-level audio as long (within tolerance seconds)
    as espeak-ng's own synthesis of text."""
    assert recording.exists() and recording.stat().st_size > 44, f"no recording at {recording}"
    ref = audio.reference_speech(text, workdir)
    span = audio.speech_span(recording)
    assert span is not None, f"{recording} is silent ({audio.duration(recording):.2f} s of audio)"
    assert span.rms_db > SPEECH_MIN_DBFS, (
        f"speech in {recording.name} is too quiet: {span.rms_db:.1f} dBFS (<= {SPEECH_MIN_DBFS})")
    assert abs(span.length - ref.length) <= tolerance, (
        f"heard {span.length:.2f} s of sound from {span.start:.2f} s in {recording.name}, "
        f"espeak-ng says {text!r} in {ref.length:.2f} s")
    return span
