"""Audio helpers for the interop suite: synthesize prompts with espeak-ng, measure recordings with sox.

Every measurement goes through sox, so any WAV a peer or the server writes (16-bit PCM, mu-law,
a-law, any rate) is read the same way.
"""

from __future__ import annotations

import array
import math
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

RATE = 8000
FRAME = 160  # 20 ms at 8 kHz


def require_tools() -> None:
    missing = [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]
    if missing:
        raise RuntimeError(f"missing audio tools {missing}: run scripts/install-test-peers.sh")


def synthesize(text: str, out: Path, pad_before: float = 0.0, pad_after: float = 0.0,
               voice: str = "en-us") -> Path:
    """espeak-ng speech as an 8 kHz mono 16-bit WAV, with silence padded before and after."""
    require_tools()
    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "espeak.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True,
                       capture_output=True)
        subprocess.run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer",
                        str(out), "pad", f"{pad_before}", f"{pad_after}"], check=True, capture_output=True)
    return out


def silence(out: Path, seconds: float) -> Path:
    require_tools()
    subprocess.run(["sox", "-n", "-r", str(RATE), "-c", "1", "-b", "16", str(out), "trim", "0",
                    f"{seconds}"], check=True, capture_output=True)
    return Path(out)


def samples(path: Path) -> array.array:
    """The file as 8 kHz mono signed 16-bit samples (sox does the conversion)."""
    out = subprocess.run(["sox", str(path), "-t", "raw", "-r", str(RATE), "-c", "1", "-b", "16",
                          "-e", "signed-integer", "-L", "-"], check=True, capture_output=True).stdout
    a = array.array("h")
    a.frombytes(out[: len(out) // 2 * 2])
    return a


def sox_stats(path: Path, trim: tuple[float, float] | None = None) -> dict[str, float]:
    """`sox PATH -n [trim start =end] stats` as a dict (keys as sox prints them, e.g. 'RMS lev dB')."""
    cmd = ["sox", str(path), "-n"]
    if trim is not None:
        cmd += ["trim", f"{trim[0]:.3f}", f"={trim[1]:.3f}"]
    cmd += ["stats"]
    err = subprocess.run(cmd, check=True, capture_output=True, text=True).stderr
    stats: dict[str, float] = {}
    for line in err.splitlines():
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            continue
        key, value = parts[0].strip(), parts[1]
        try:
            stats[key] = float(value)
        except ValueError:
            pass
    return stats


def duration(path: Path) -> float:
    out = subprocess.run(["soxi", "-D", str(path)], check=True, capture_output=True, text=True).stdout
    return float(out.strip())


@dataclass
class Speech:
    """The span of a recording that holds sound above a threshold."""
    start: float
    end: float
    rms_db: float  # sox's RMS level over the span, dBFS
    total: float  # the whole file's duration

    @property
    def length(self) -> float:
        return self.end - self.start


def frame_levels(path: Path) -> list[float]:
    """RMS dBFS of each 20 ms frame."""
    s = samples(path)
    levels = []
    for i in range(0, len(s) - FRAME + 1, FRAME):
        acc = 0
        for v in s[i:i + FRAME]:
            acc += v * v
        rms = math.sqrt(acc / FRAME)
        levels.append(20 * math.log10(rms / 32768) if rms > 0 else -120.0)
    return levels


def speech_span(path: Path, threshold_db: float = -45.0, min_gap: float = 0.8) -> Speech | None:
    """The first run of sound in the file: from the first frame above threshold_db to the last one
    before a silence longer than min_gap. Gaps between words are shorter than min_gap, so one
    sentence comes out as one span. None when the file is silent."""
    levels = frame_levels(path)
    total = len(levels) * FRAME / RATE
    loud = [i for i, db in enumerate(levels) if db > threshold_db]
    if not loud:
        return None
    first = last = loud[0]
    max_gap_frames = int(min_gap * RATE / FRAME)
    for i in loud[1:]:
        if i - last > max_gap_frames:
            break
        last = i
    start, end = first * FRAME / RATE, (last + 1) * FRAME / RATE
    rms = sox_stats(path, (start, end)).get("RMS lev dB", -120.0)
    return Speech(start=start, end=end, rms_db=rms, total=total)


def reference_speech(text: str, tmpdir: Path) -> Speech:
    """espeak-ng's own synthesis of `text`, measured the same way as a recording."""
    ref = synthesize(text, Path(tmpdir) / "reference.wav", pad_before=0.5, pad_after=0.5)
    span = speech_span(ref)
    assert span is not None, "espeak-ng produced silence"
    return span
