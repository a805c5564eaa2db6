//! Mixing 20 ms frames for conference rooms: sums in 32 bits, "mix-minus" (each participant
//! hears the sum of the others, never itself) and a limiter that keeps loud sums inside 16 bits
//! without the wrap-around of plain `i16` addition or the harsh distortion of hard clipping.
//!
//! The room's mixer in `node` sums every heard participant's frame once into a [`MixBus`], then
//! builds each listener's frame from that sum less the listener's own contribution, plus what
//! only that listener hears (a coach's whisper, its own announcement), and passes it through the
//! listener's [`Limiter`]. The work per room and tick is O(participants), not O(participants²).

use crate::FRAME_SAMPLES;

/// The level the limiter keeps peaks under: about -0.3 dBFS.
pub const LIMIT: i32 = 31_900;

/// How fast the limiter's gain returns towards 1 after a loud passage: per frame it closes this
/// fraction of the distance (a release time constant of about 100 ms at 20 ms frames).
const RELEASE_PER_FRAME: f32 = 0.18;

/// One frame of summed audio in 32 bits: adding even thousands of full-scale frames cannot
/// overflow it.
#[derive(Debug, Clone)]
pub struct MixBus {
    sum: [i32; FRAME_SAMPLES],
}

impl Default for MixBus {
    fn default() -> MixBus {
        MixBus::new()
    }
}

impl MixBus {
    pub fn new() -> MixBus {
        MixBus {
            sum: [0; FRAME_SAMPLES],
        }
    }

    /// Starts a new frame (silence).
    pub fn clear(&mut self) {
        self.sum = [0; FRAME_SAMPLES];
    }

    /// Adds a frame; a shorter slice is padded with silence, a longer one cut.
    pub fn add(&mut self, frame: &[i16]) {
        for (s, &x) in self.sum.iter_mut().zip(frame) {
            *s += i32::from(x);
        }
    }

    /// The sum so far.
    pub fn samples(&self) -> &[i32; FRAME_SAMPLES] {
        &self.sum
    }
}

/// A listener's frame in 32 bits: the room's sum less the listener's own audio, plus its
/// private extras, then limited into 16 bits by [`Limiter::apply`].
#[derive(Debug, Clone)]
pub struct Listener {
    acc: [i32; FRAME_SAMPLES],
}

impl Default for Listener {
    fn default() -> Listener {
        Listener::new()
    }
}

impl Listener {
    pub fn new() -> Listener {
        Listener {
            acc: [0; FRAME_SAMPLES],
        }
    }

    /// Starts from the room's sum.
    pub fn start(&mut self, bus: &MixBus) {
        self.acc = bus.sum;
    }

    /// Starts from silence (a listener that hears only its extras).
    pub fn start_silent(&mut self) {
        self.acc = [0; FRAME_SAMPLES];
    }

    /// Takes the listener's own contribution back out of the sum (mix-minus).
    pub fn subtract(&mut self, own: &[i16]) {
        for (a, &x) in self.acc.iter_mut().zip(own) {
            *a -= i32::from(x);
        }
    }

    /// Adds audio only this listener hears.
    pub fn add(&mut self, extra: &[i16]) {
        for (a, &x) in self.acc.iter_mut().zip(extra) {
            *a += i32::from(x);
        }
    }

    /// The frame so far, before limiting.
    pub fn samples(&self) -> &[i32; FRAME_SAMPLES] {
        &self.acc
    }
}

/// A peak limiter with instant attack and smooth release, one per listener so a loud room does
/// not pump everybody's level at once. Frames whose peak stays under [`LIMIT`] pass unchanged
/// (gain 1): a conversation of two is bit-exact.
#[derive(Debug, Clone)]
pub struct Limiter {
    gain: f32,
}

impl Default for Limiter {
    fn default() -> Limiter {
        Limiter::new()
    }
}

impl Limiter {
    pub fn new() -> Limiter {
        Limiter { gain: 1.0 }
    }

    /// The gain applied to the last frame (1 = unchanged).
    pub fn gain(&self) -> f32 {
        self.gain
    }

    /// Limits `input` into `out`. The gain for the frame is the smaller of the released gain and
    /// the one that brings the frame's peak to [`LIMIT`]; it moves linearly from the previous
    /// frame's gain across the frame when it rises (release), and applies at once when it falls
    /// (attack), so no sample of the output exceeds the limit. A final clamp guards rounding.
    pub fn apply(&mut self, input: &[i32; FRAME_SAMPLES], out: &mut [i16; FRAME_SAMPLES]) {
        let peak = input.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        let needed = if peak as i64 > i64::from(LIMIT) {
            LIMIT as f32 / peak as f32
        } else {
            1.0
        };
        let released = self.gain + (1.0 - self.gain) * RELEASE_PER_FRAME;
        let target = released.min(needed);
        if (target - 1.0).abs() < f32::EPSILON && (self.gain - 1.0).abs() < f32::EPSILON {
            // The common case: nothing loud, now or just before.
            for (o, &s) in out.iter_mut().zip(input) {
                *o = clamp16(s);
            }
            self.gain = 1.0;
            return;
        }
        let start = if target < self.gain {
            target
        } else {
            self.gain
        };
        let step = (target - start) / FRAME_SAMPLES as f32;
        for (i, (o, &s)) in out.iter_mut().zip(input).enumerate() {
            let g = (start + step * (i + 1) as f32).min(needed);
            *o = clamp16((s as f32 * g).round() as i32);
        }
        self.gain = if target > 0.999 { 1.0 } else { target };
    }
}

fn clamp16(s: i32) -> i16 {
    // Lossless: the value is clamped into i16's range first.
    s.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, amplitude: f64, phase: usize) -> [i16; FRAME_SAMPLES] {
        let mut f = [0i16; FRAME_SAMPLES];
        for (i, s) in f.iter_mut().enumerate() {
            let t = (phase + i) as f64 / 8000.0;
            *s = (amplitude * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16;
        }
        f
    }

    #[test]
    fn quiet_sums_pass_bit_exact() {
        let a = sine(440.0, 5000.0, 0);
        let b = sine(700.0, 5000.0, 0);
        let mut bus = MixBus::new();
        bus.add(&a);
        bus.add(&b);
        let mut l = Listener::new();
        l.start(&bus);
        l.subtract(&a);
        let mut out = [0; FRAME_SAMPLES];
        Limiter::new().apply(l.samples(), &mut out);
        assert_eq!(out, b, "a listener hears exactly the others");
    }

    #[test]
    fn loud_sums_are_limited_not_wrapped() {
        let a = sine(440.0, 30000.0, 0);
        let mut bus = MixBus::new();
        for _ in 0..4 {
            bus.add(&a);
        }
        let mut l = Listener::new();
        l.start(&bus);
        let mut out = [0; FRAME_SAMPLES];
        let mut limiter = Limiter::new();
        limiter.apply(l.samples(), &mut out);
        let peak = out.iter().map(|s| i32::from(*s).abs()).max().unwrap_or(0);
        assert!(peak <= LIMIT, "peak {peak}");
        assert!(peak > LIMIT - 200, "uses the range: peak {peak}");
        // The sign follows the input: no wrap-around flips a loud positive sample negative.
        for (o, i) in out.iter().zip(l.samples()) {
            assert!(i32::from(*o).signum() == i.signum() || *o == 0);
        }
        assert!(limiter.gain() < 0.3);
    }

    #[test]
    fn gain_recovers_after_a_loud_passage() {
        let mut limiter = Limiter::new();
        let mut out = [0; FRAME_SAMPLES];
        let loud: [i32; FRAME_SAMPLES] = sine(440.0, 30000.0, 0).map(|s| i32::from(s) * 3);
        limiter.apply(&loud, &mut out);
        let quiet: [i32; FRAME_SAMPLES] = sine(440.0, 3000.0, 0).map(i32::from);
        for _ in 0..60 {
            limiter.apply(&quiet, &mut out);
        }
        assert_eq!(limiter.gain(), 1.0, "back to unity after 1.2 s");
        let expected = sine(440.0, 3000.0, 0);
        assert_eq!(out, expected);
    }

    #[test]
    fn release_never_overshoots_the_limit() {
        let mut limiter = Limiter::new();
        let mut out = [0; FRAME_SAMPLES];
        for n in 0..50 {
            // Levels alternating between very loud and just loud.
            let k = if n % 2 == 0 { 4 } else { 2 };
            let frame: [i32; FRAME_SAMPLES] =
                sine(300.0, 30000.0, n * FRAME_SAMPLES).map(|s| i32::from(s) * k);
            limiter.apply(&frame, &mut out);
            let peak = out.iter().map(|s| i32::from(*s).abs()).max().unwrap_or(0);
            assert!(peak <= LIMIT, "frame {n}: peak {peak}");
        }
    }
}
