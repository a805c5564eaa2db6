//! Band-limited sample-rate conversion: a windowed-sinc (Kaiser) polyphase FIR.
//!
//! Converting 44.1 kHz music to 8 kHz without a low-pass folds everything above 4 kHz back into
//! the telephone band as noise, so every conversion filters at 0.45 of the lower of the two rates
//! (3.6 kHz for 8 kHz output) with a Kaiser window (beta 8, about 80 dB stop-band) that spans 32
//! periods of the lower rate on each side. For rational ratios with a small denominator (all the
//! common rates) the filter taps are precomputed per phase; odd ratios compute them on the fly.

use std::f64::consts::PI;

/// Zero crossings of the lower rate's sinc on each side of the centre.
const HALF_WIDTH_PERIODS: u64 = 32;
/// Cutoff as a fraction of the lower of the two sample rates.
const CUTOFF: f64 = 0.45;
const KAISER_BETA: f64 = 8.0;
/// Above this many phases an exact table would be large; the taps are then interpolated between
/// the rows of a table of `INTERPOLATED_PHASES` phases instead.
const MAX_TABLE_PHASES: u64 = 1024;
const INTERPOLATED_PHASES: usize = 256;
/// Resolution of the tabulated Kaiser window.
const WINDOW_POINTS: usize = 4096;
/// Highest input rate accepted (keeps the filter length bounded).
pub const MAX_RATE: u32 = 768_000;

/// A streaming resampler from `in_rate` to `out_rate` for one channel of `f32` samples.
#[derive(Debug, Clone)]
pub struct Resampler {
    /// Input samples per output sample is `step_num / step_den` (the reduced ratio).
    step_num: u64,
    step_den: u64,
    /// Taps each side of the centre, in input samples.
    half: usize,
    /// Cutoff in cycles per input sample.
    cutoff: f64,
    /// `step_den` rows of `2 * half` taps (exact), or `INTERPOLATED_PHASES + 1` rows to
    /// interpolate between when `interpolated`.
    table: Vec<f32>,
    interpolated: bool,
    scratch: Vec<f32>,
    history: Vec<f32>,
    /// Absolute input index of `history[0]`; negative at the start (zero padding).
    history_start: i64,
    input_len: u64,
    next_out: u64,
    passthrough: bool,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Modified Bessel function of the first kind, order 0 (power series), for the Kaiser window.
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let half = x / 2.0;
    for k in 1..50 {
        term *= (half / k as f64) * (half / k as f64);
        sum += term;
        if term < sum * 1e-12 {
            break;
        }
    }
    sum
}

/// The Kaiser window over |x| / half in 0..=1, tabulated once: evaluating the Bessel series per
/// tap would dominate the cost of building filters.
fn kaiser(r: f64) -> f64 {
    static TABLE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let norm = bessel_i0(KAISER_BETA);
        (0..=WINDOW_POINTS)
            .map(|i| {
                let r = i as f64 / WINDOW_POINTS as f64;
                bessel_i0(KAISER_BETA * (1.0 - r * r).max(0.0).sqrt()) / norm
            })
            .collect()
    });
    let r = r.abs();
    if r >= 1.0 {
        return 0.0;
    }
    let pos = r * WINDOW_POINTS as f64;
    let i = pos as usize; // r < 1, so i < WINDOW_POINTS and i + 1 is in the table
    let a = pos - i as f64;
    table[i] * (1.0 - a) + table[i + 1] * a
}

impl Resampler {
    /// `None` if either rate is 0 or above [`MAX_RATE`].
    pub fn new(in_rate: u32, out_rate: u32) -> Option<Self> {
        if in_rate == 0 || out_rate == 0 || in_rate > MAX_RATE || out_rate > MAX_RATE {
            return None;
        }
        let g = gcd(u64::from(in_rate), u64::from(out_rate));
        let step_num = u64::from(in_rate) / g;
        let step_den = u64::from(out_rate) / g;
        let lower = in_rate.min(out_rate);
        let half = (HALF_WIDTH_PERIODS * u64::from(in_rate)).div_ceil(u64::from(lower)) as usize;
        let cutoff = CUTOFF * f64::from(lower) / f64::from(in_rate);
        let mut r = Resampler {
            step_num,
            step_den,
            half,
            cutoff,
            table: Vec::new(),
            interpolated: step_den > MAX_TABLE_PHASES,
            scratch: vec![0.0; 2 * half],
            history: vec![0.0; half],
            history_start: -(half as i64),
            input_len: 0,
            next_out: 0,
            passthrough: in_rate == out_rate,
        };
        if !r.passthrough {
            let rows = if r.interpolated {
                INTERPOLATED_PHASES + 1
            } else {
                step_den as usize
            };
            let mut table = vec![0.0f32; rows * 2 * half];
            let phases = if r.interpolated {
                INTERPOLATED_PHASES as f64
            } else {
                step_den as f64
            };
            for (phase, row) in table.chunks_exact_mut(2 * half).enumerate() {
                r.fill_taps(phase as f64 / phases, row);
            }
            r.table = table;
        }
        Some(r)
    }

    /// Computes the normalised taps for the output instant `frac` (0..=1) after an input sample.
    fn fill_taps(&self, frac: f64, row: &mut [f32]) {
        let half = self.half as f64;
        let mut sum = 0.0;
        let mut taps = Vec::with_capacity(row.len());
        for m in 0..row.len() {
            // Distance from the output instant to input sample m of the window.
            let x = half - 1.0 - m as f64 + frac;
            let arg = 2.0 * self.cutoff * x;
            let sinc = if arg.abs() < 1e-12 {
                1.0
            } else {
                (PI * arg).sin() / (PI * arg)
            };
            let h = sinc * kaiser(x / half);
            sum += h;
            taps.push(h);
        }
        // Unity gain at DC for every phase, so a constant input stays constant.
        for (t, h) in row.iter_mut().zip(taps) {
            *t = if sum.abs() > 1e-12 {
                (h / sum) as f32
            } else {
                0.0
            };
        }
    }

    /// Number of output samples the whole input so far will produce.
    fn total_out(&self) -> u64 {
        (self.input_len * self.step_den).div_ceil(self.step_num)
    }

    /// Feeds input and appends every output sample that can already be computed to `out`.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        if self.passthrough {
            out.extend_from_slice(input);
            return;
        }
        self.history.extend_from_slice(input);
        self.input_len += input.len() as u64;
        self.produce(out, false);
    }

    /// Flushes the filter's tail (the input is taken to be followed by silence) and appends the
    /// remaining output. Afterwards the total output is `ceil(input_len * out_rate / in_rate)`.
    pub fn finish(&mut self, out: &mut Vec<f32>) {
        if self.passthrough {
            return;
        }
        let padded = self.history.len() + self.half + 1;
        self.history.resize(padded, 0.0);
        self.produce(out, true);
    }

    fn produce(&mut self, out: &mut Vec<f32>, flushing: bool) {
        let taps = 2 * self.half;
        let end = if flushing { self.total_out() } else { u64::MAX };
        while self.next_out < end {
            let pos = self.next_out * self.step_num;
            let centre = (pos / self.step_den) as i64;
            let phase = pos % self.step_den;
            if !flushing && centre + self.half as i64 >= self.input_len as i64 {
                break;
            }
            let first = centre - self.half as i64 + 1;
            // first >= history_start: the history keeps everything from the oldest tap of the
            // next output, and starts with `half` zeros of padding.
            let start = (first - self.history_start) as usize;
            let Some(window) = self.history.get(start..start + taps) else {
                break;
            };
            let row: &[f32] = if self.interpolated {
                let pos = phase as f64 / self.step_den as f64 * INTERPOLATED_PHASES as f64;
                let k = (pos as usize).min(INTERPOLATED_PHASES - 1);
                let a = (pos - k as f64) as f32;
                let lo = &self.table[k * taps..(k + 1) * taps];
                let hi = &self.table[(k + 1) * taps..(k + 2) * taps];
                for ((s, l), h) in self.scratch.iter_mut().zip(lo).zip(hi) {
                    *s = l + (h - l) * a;
                }
                &self.scratch
            } else {
                let at = phase as usize * taps;
                &self.table[at..at + taps]
            };
            let acc: f32 = window.iter().zip(row).map(|(x, h)| x * h).sum();
            out.push(acc);
            self.next_out += 1;
        }
        // Drop history no future output needs, in large steps to keep it cheap.
        let pos = self.next_out * self.step_num;
        let oldest_needed = (pos / self.step_den) as i64 - self.half as i64 + 1;
        let droppable = (oldest_needed - self.history_start).max(0) as usize;
        if droppable > 8192 {
            self.history.drain(..droppable);
            self.history_start += droppable as i64;
        }
    }
}

/// Resamples a whole signal in one call.
pub fn resample(input: &[f32], in_rate: u32, out_rate: u32) -> Option<Vec<f32>> {
    let mut r = Resampler::new(in_rate, out_rate)?;
    let mut out = Vec::with_capacity(input.len() * out_rate as usize / in_rate as usize + 1);
    r.process(input, &mut out);
    r.finish(&mut out);
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sine(freq: f64, rate: u32, len: usize, amp: f64) -> Vec<f32> {
        (0..len)
            .map(|i| (amp * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()) as f32)
            .collect()
    }

    /// RMS of the middle of a signal, skipping the filter's edges.
    pub(crate) fn mid_rms(x: &[f32]) -> f64 {
        let m = &x[x.len() / 4..x.len() * 3 / 4];
        (m.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / m.len() as f64).sqrt()
    }

    #[test]
    fn output_lengths() {
        for rate in [
            8000u32, 11025, 16000, 22050, 32000, 44100, 48000, 96000, 44056, 6000,
        ] {
            let out = resample(&vec![0.1; rate as usize], rate, 8000).unwrap();
            assert_eq!(out.len(), 8000, "rate {rate}");
        }
        assert!(Resampler::new(0, 8000).is_none());
        assert!(Resampler::new(8000, MAX_RATE + 1).is_none());
    }

    #[test]
    fn passband_kept_stopband_removed() {
        for rate in [11025u32, 16000, 22050, 44100, 48000, 44056] {
            let len = rate as usize / 2;
            let pass = resample(&sine(1000.0, rate, len, 0.5), rate, 8000).unwrap();
            let gain = mid_rms(&pass) / (0.5 / 2f64.sqrt());
            assert!((gain - 1.0).abs() < 0.02, "rate {rate}: 1 kHz gain {gain}");
            if rate > 10000 {
                // 5 kHz would alias to 3 kHz without the low-pass.
                let alias = resample(&sine(5000.0, rate, len, 0.5), rate, 8000).unwrap();
                let g = mid_rms(&alias) / (0.5 / 2f64.sqrt());
                assert!(g < 0.001, "rate {rate}: 5 kHz leaks {g}");
            }
        }
    }

    #[test]
    fn streaming_matches_one_shot() {
        let x = sine(440.0, 44100, 30000, 0.3);
        let whole = resample(&x, 44100, 8000).unwrap();
        let mut r = Resampler::new(44100, 8000).unwrap();
        let mut out = Vec::new();
        for chunk in x.chunks(1153) {
            r.process(chunk, &mut out);
        }
        r.finish(&mut out);
        assert_eq!(out, whole);
    }

    #[test]
    fn upsampling_works() {
        let out = resample(&sine(500.0, 4000, 4000, 0.5), 4000, 8000).unwrap();
        assert_eq!(out.len(), 8000);
        let gain = mid_rms(&out) / (0.5 / 2f64.sqrt());
        assert!((gain - 1.0).abs() < 0.02, "{gain}");
    }
}
