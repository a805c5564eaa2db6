//! In-band DTMF detection (Goertzel), for callers whose DTMF arrives as audio rather than as
//! RFC 4733 telephone-events.

/// Row (low group) frequencies in Hz.
pub const ROW_HZ: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
/// Column (high group) frequencies in Hz.
pub const COL_HZ: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// The (row, column) frequencies of a DTMF key.
pub fn frequencies(digit: char) -> Option<(f64, f64)> {
    let digit = digit.to_ascii_uppercase();
    KEYS.iter().enumerate().find_map(|(r, row)| {
        row.iter()
            .position(|&k| k == digit)
            .map(|c| (ROW_HZ[r], COL_HZ[c]))
    })
}

/// Samples per analysis block: 205 at 8 kHz (25.6 ms) puts the eight DTMF frequencies near bin
/// centres, the usual choice for Goertzel DTMF detectors.
const BLOCK: usize = 205;
/// Blocks in a row that must agree before a digit is reported (about 51 ms of tone).
const BLOCKS_TO_DETECT: u8 = 2;
/// Blocks in a row without that digit before the key counts as released.
const BLOCKS_TO_RELEASE: u8 = 2;
/// Minimum amplitude of each tone, as a fraction of full scale (about -36 dBFS).
const MIN_AMPLITUDE: f32 = 0.016;
/// Maximum power ratio between the two tones (8 dB of twist either way).
const MAX_TWIST: f32 = 6.3;
/// The strongest tone of a group must exceed the others of its group by this power ratio (6 dB).
const MIN_GROUP_MARGIN: f32 = 4.0;
/// Share of the block's energy the two tones must hold; speech and music spread theirs out.
const MIN_TONE_SHARE: f32 = 0.7;

/// Detects DTMF key presses in 8 kHz audio with Goertzel filters.
///
/// Feed every received frame through [`InbandDetector::handle_frame`]; each key press is reported
/// once, when its tone has lasted about 50 ms, and the key must be released (about 50 ms without
/// the tone) before the same digit is reported again.
#[derive(Debug, Clone)]
pub struct InbandDetector {
    block: [f32; BLOCK],
    filled: usize,
    coeffs: [f32; 8],
    candidate: Option<char>,
    candidate_blocks: u8,
    reported: Option<char>,
    release_blocks: u8,
}

impl Default for InbandDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl InbandDetector {
    pub fn new() -> Self {
        let mut coeffs = [0.0f32; 8];
        for (c, f) in coeffs.iter_mut().zip(ROW_HZ.iter().chain(COL_HZ.iter())) {
            *c = (2.0 * (2.0 * std::f64::consts::PI * f / 8000.0).cos()) as f32;
        }
        InbandDetector {
            block: [0.0; BLOCK],
            filled: 0,
            coeffs,
            candidate: None,
            candidate_blocks: 0,
            reported: None,
            release_blocks: 0,
        }
    }

    /// Takes a frame of 8 kHz samples (any length) and returns a digit when a key press is
    /// recognised in it. At most one digit per call for frames up to 205 samples; longer frames
    /// report the last digit recognised.
    pub fn handle_frame(&mut self, frame: &[i16]) -> Option<char> {
        let mut found = None;
        let mut rest = frame;
        while !rest.is_empty() {
            let take = (BLOCK - self.filled).min(rest.len());
            for (d, &s) in self.block[self.filled..self.filled + take]
                .iter_mut()
                .zip(&rest[..take])
            {
                *d = f32::from(s) / 32768.0;
            }
            self.filled += take;
            rest = &rest[take..];
            if self.filled == BLOCK {
                self.filled = 0;
                let digit = self.analyse_block();
                if let Some(d) = self.debounce(digit) {
                    found = Some(d);
                }
            }
        }
        found
    }

    fn analyse_block(&self) -> Option<char> {
        let mut power = [0.0f32; 8];
        for (p, &coeff) in power.iter_mut().zip(&self.coeffs) {
            let (mut s1, mut s2) = (0.0f32, 0.0f32);
            for &x in &self.block {
                let s = x + coeff * s1 - s2;
                s2 = s1;
                s1 = s;
            }
            *p = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        }
        let (rows, cols) = power.split_at(4);
        let best = |g: &[f32]| {
            let (i, &p) = g
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap_or((0, &0.0)); // groups have four entries
            let others_ok = g
                .iter()
                .enumerate()
                .all(|(j, &q)| j == i || q * MIN_GROUP_MARGIN <= p);
            (i, p, others_ok)
        };
        let (r, row_power, row_clear) = best(rows);
        let (c, col_power, col_clear) = best(cols);
        if !row_clear || !col_clear {
            return None;
        }
        // Goertzel power of a sine of amplitude A over N samples is about (A N / 2)^2.
        let n = BLOCK as f32;
        let min_power = (MIN_AMPLITUDE * n / 2.0).powi(2);
        if row_power < min_power || col_power < min_power {
            return None;
        }
        if row_power > col_power * MAX_TWIST || col_power > row_power * MAX_TWIST {
            return None;
        }
        // Energy of each tone over the block is A^2 N / 2 = 2 P / N.
        let tone_energy = 2.0 * (row_power + col_power) / n;
        let total_energy: f32 = self.block.iter().map(|x| x * x).sum();
        if tone_energy < MIN_TONE_SHARE * total_energy {
            return None;
        }
        Some(KEYS[r][c])
    }

    fn debounce(&mut self, digit: Option<char>) -> Option<char> {
        if digit.is_some() && digit == self.candidate {
            self.candidate_blocks = self.candidate_blocks.saturating_add(1);
        } else {
            self.candidate = digit;
            self.candidate_blocks = u8::from(digit.is_some());
        }
        if let Some(reported) = self.reported {
            if digit == Some(reported) {
                self.release_blocks = 0;
                return None;
            }
            self.release_blocks += 1;
            if self.release_blocks < BLOCKS_TO_RELEASE {
                return None;
            }
            self.reported = None;
        }
        if self.candidate_blocks >= BLOCKS_TO_DETECT {
            self.reported = self.candidate;
            self.release_blocks = 0;
            return self.candidate;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{tone, Codec, FRAME_SAMPLES};

    fn detect(audio: &[i16]) -> String {
        let mut det = InbandDetector::new();
        audio
            .chunks(FRAME_SAMPLES)
            .filter_map(|f| det.handle_frame(f))
            .collect()
    }

    fn keyed(digits: &str, on_ms: u32, off_ms: u32) -> Vec<i16> {
        let mut audio = vec![0i16; 8 * off_ms as usize];
        for d in digits.chars() {
            audio.extend(tone::dtmf(d, on_ms).unwrap());
            audio.extend(vec![0i16; 8 * off_ms as usize]);
        }
        audio
    }

    #[test]
    fn frequencies_of_keys() {
        assert_eq!(frequencies('5'), Some((770.0, 1336.0)));
        assert_eq!(frequencies('d'), Some((941.0, 1633.0)));
        assert_eq!(frequencies('x'), None);
    }

    #[test]
    fn detects_all_sixteen_keys_once_each() {
        assert_eq!(
            detect(&keyed("0123456789*#ABCD", 100, 60)),
            "0123456789*#ABCD"
        );
    }

    #[test]
    fn repeated_key_and_long_press() {
        assert_eq!(detect(&keyed("55", 80, 80)), "55");
        assert_eq!(detect(&keyed("9", 2000, 50)), "9");
    }

    #[test]
    fn survives_g711_and_noise() {
        let mut audio = keyed("147*", 90, 70);
        // Add pseudo-random noise about 20 dB below the tones.
        let mut seed = 12345u32;
        for s in audio.iter_mut() {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let noise = ((seed >> 16) as i32 % 1000) - 500;
            *s = (i32::from(*s) + noise).clamp(-32768, 32767) as i16;
        }
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let mut enc = Vec::new();
            let mut dec = Vec::new();
            codec.encode(&audio, &mut enc);
            codec.decode(&enc, &mut dec);
            assert_eq!(detect(&dec), "147*", "{codec:?}");
        }
    }

    #[test]
    fn ignores_non_dtmf_audio() {
        assert_eq!(detect(&vec![0; 8000]), "");
        assert_eq!(detect(&tone::beep()), "");
        assert_eq!(
            detect(&tone::sine(770.0, 500, -6.0)),
            "",
            "a single DTMF frequency"
        );
        // Two tones with the wrong twist (row 20 dB above column).
        let row = tone::sine(697.0, 300, -6.0);
        let col = tone::sine(1209.0, 300, -26.0);
        let twisted: Vec<i16> = row.iter().zip(&col).map(|(a, b)| a + b).collect();
        assert_eq!(detect(&twisted), "");
        // A chord with a third strong tone is not a key.
        let third = tone::sine(1000.0, 300, -6.0);
        let key = tone::dtmf('1', 300).unwrap();
        let chord: Vec<i16> = key.iter().zip(&third).map(|(a, b)| a / 2 + b / 2).collect();
        assert_eq!(detect(&chord), "");
        // Too short: 30 ms.
        assert_eq!(detect(&keyed("3", 30, 100)), "");
    }
}
