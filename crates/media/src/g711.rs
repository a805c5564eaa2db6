//! ITU-T G.711 mu-law and A-law companding, one sample at a time.
//!
//! Decoding is a table lookup (the tables are built at compile time); encoding is a few integer
//! operations, so neither allocates nor branches on untrusted data in a way that can fail.

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

const fn ulaw_decode_calc(code: u8) -> i16 {
    let u = !code;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0f) as i32;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn alaw_decode_calc(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut magnitude = ((a & 0x0f) as i32) << 4;
    let segment = ((a & 0x70) >> 4) as i32;
    match segment {
        0 => magnitude += 8,
        1 => magnitude += 0x108,
        _ => magnitude = (magnitude + 0x108) << (segment - 1),
    }
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn build_table(alaw: bool) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if alaw {
            alaw_decode_calc(i as u8)
        } else {
            ulaw_decode_calc(i as u8)
        };
        i += 1;
    }
    table
}

static ULAW_TABLE: [i16; 256] = build_table(false);
static ALAW_TABLE: [i16; 256] = build_table(true);

/// Encodes one 16-bit linear sample to mu-law (G.711 table 2, with the usual 0x84 bias).
#[inline]
pub fn ulaw_encode(sample: i16) -> u8 {
    let mut v = i32::from(sample);
    let sign = if v < 0 {
        v = -v;
        0x80
    } else {
        0
    };
    v = v.min(ULAW_CLIP) + ULAW_BIAS;
    // v is in 0x84..=0x7fff, so v >> 7 is 1..=255 and the exponent 0..=7.
    let exponent = 31 - ((v >> 7) as u32).leading_zeros() as i32;
    let mantissa = (v >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// Decodes one mu-law code word to a 16-bit linear sample.
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_TABLE[usize::from(code)]
}

/// Encodes one 16-bit linear sample to A-law (G.711 table 1, even bits inverted).
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    // A-law works on 13-bit magnitudes.
    let mut v = i32::from(sample) >> 3;
    let mask = if v >= 0 {
        0xd5
    } else {
        v = -v - 1;
        0x55
    };
    // Segment = position of the highest set bit above bit 4, 0 for v < 32; 8+ means clip.
    let segment = if v < 32 {
        0
    } else {
        (31 - (v as u32).leading_zeros()) as i32 - 4
    };
    let code = if segment >= 8 {
        0x7f
    } else if segment < 2 {
        (segment << 4) | ((v >> 1) & 0x0f)
    } else {
        (segment << 4) | ((v >> segment) & 0x0f)
    };
    (code as u8) ^ mask
}

/// Decodes one A-law code word to a 16-bit linear sample.
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_TABLE[usize::from(code)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_round_trips_every_code_word() {
        for code in 0..=255u8 {
            let back = ulaw_encode(ulaw_decode(code));
            // 0x7f is "negative zero": it decodes to 0, which encodes as positive zero 0xff.
            let expected = if code == 0x7f { 0xff } else { code };
            assert_eq!(back, expected, "code {code:#04x}");
        }
    }

    #[test]
    fn alaw_round_trips_every_code_word() {
        for code in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(code)), code, "code {code:#04x}");
        }
    }

    #[test]
    fn ulaw_known_values() {
        assert_eq!(ulaw_decode(0xff), 0);
        assert_eq!(ulaw_decode(0x7f), 0);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0xfe), 8);
        assert_eq!(ulaw_decode(0x7e), -8);
        assert_eq!(ulaw_decode(0xef), 132);
        assert_eq!(ulaw_encode(0), 0xff);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_encode(-1), 0x7f);
        assert_eq!(ulaw_encode(1000), 0xce);
        assert_eq!(ulaw_encode(-1000), 0x4e);
    }

    #[test]
    fn alaw_known_values() {
        assert_eq!(alaw_decode(0xd5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xaa), 32256);
        assert_eq!(alaw_decode(0x2a), -32256);
        assert_eq!(alaw_encode(0), 0xd5);
        assert_eq!(alaw_encode(i16::MAX), 0xaa);
        assert_eq!(alaw_encode(i16::MIN), 0x2a);
        assert_eq!(alaw_encode(1000), 0xfa);
        assert_eq!(alaw_encode(-1000), 0x7a);
    }

    #[test]
    fn encoding_is_monotonic_and_error_is_bounded() {
        // Quantisation error of a companded code stays within half a step of its segment.
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            let u = i32::from(ulaw_decode(ulaw_encode(s)));
            let a = i32::from(alaw_decode(alaw_encode(s)));
            let s = i32::from(s);
            let tol = (s.abs() / 16).max(16) + 8;
            assert!(
                (u - s).abs() <= tol.max(s.abs() - 32124 + 1),
                "ulaw {s} -> {u}"
            );
            assert!(
                (a - s).abs() <= tol.max(s.abs() - 32256 + 1),
                "alaw {s} -> {a}"
            );
        }
    }
}
