//! Text in short messages: the GSM 03.38 default alphabet (3GPP TS 23.038 §6.2.1) with its
//! extension table, UCS-2 (UTF-16BE, surrogate pairs included, as handsets send emoji),
//! Latin-1, and the data_coding values that select them (SMPP 3.4 §5.2.19).
//!
//! Decoding never fails: what cannot be read becomes U+FFFD, since a received message is
//! stored and shown, not rejected. Encoding fails with [`TextError`] on a character the
//! alphabet lacks.

/// The escape to the extension table.
const ESC: u8 = 0x1B;

/// The default alphabet, by septet value.
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The extension table: septet after ESC, and its character.
const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    #[error("{0:?} is not in the GSM 03.38 default alphabet or its extension")]
    NotGsm7(char),
    #[error("{0:?} is not Latin-1")]
    NotLatin1(char),
}

/// The septets for one character: one, two (ESC + extension), or `None`.
pub fn gsm7_septets(c: char) -> Option<([u8; 2], usize)> {
    // ESC itself is not a character a message can carry.
    if c == '\u{1B}' {
        return None;
    }
    if let Some(i) = BASIC.iter().position(|&b| b == c) {
        return Some(([i as u8, 0], 1));
    }
    EXTENSION.iter().find(|&&(_, e)| e == c).map(|&(s, _)| ([ESC, s], 2))
}

/// Septets a character takes in GSM-7 (1, or 2 for the extension table), `None` if it has
/// no GSM-7 form.
pub fn gsm7_len(c: char) -> Option<usize> {
    gsm7_septets(c).map(|(_, n)| n)
}

pub fn is_gsm7(text: &str) -> bool {
    text.chars().all(|c| gsm7_len(c).is_some())
}

/// Text to septets, one per octet (what data_coding 0 carries in short_message).
pub fn gsm7_encode(text: &str) -> Result<Vec<u8>, TextError> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        let (septets, n) = gsm7_septets(c).ok_or(TextError::NotGsm7(c))?;
        out.extend_from_slice(&septets[..n]);
    }
    Ok(out)
}

/// Septets, one per octet, to text. An octet with its top bit set is not a septet (U+FFFD);
/// ESC before a value the extension table lacks reads as that value's basic character
/// (TS 23.038 §6.2.1.1); a trailing ESC is dropped.
pub fn gsm7_decode(septets: &[u8]) -> String {
    let mut out = String::with_capacity(septets.len());
    let mut iter = septets.iter().copied();
    while let Some(s) = iter.next() {
        if s == ESC {
            let Some(next) = iter.next() else { break };
            match EXTENSION.iter().find(|&&(e, _)| e == next) {
                Some(&(_, c)) => out.push(c),
                // ESC ESC is kept for a further extension table: shown as a space.
                None if next == ESC => out.push(' '),
                None => out.push(basic(next)),
            }
        } else {
            out.push(basic(s));
        }
    }
    out
}

fn basic(s: u8) -> char {
    BASIC.get(s as usize).copied().unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// Packs septets into octets, LSB first (TS 23.038 §6.1.2.1.1), after `fill_bits` zero bits
/// (0..=6) that align the first septet after a user data header. Septet values above 0x7F
/// keep their low 7 bits.
pub fn gsm7_pack(septets: &[u8], fill_bits: u8) -> Vec<u8> {
    let fill = usize::from(fill_bits.min(6));
    let bits = fill + septets.len() * 7;
    let mut out = vec![0u8; bits.div_ceil(8)];
    for (i, &s) in septets.iter().enumerate() {
        let bit = fill + i * 7;
        let value = u16::from(s & 0x7F) << (bit % 8);
        out[bit / 8] |= value as u8;
        if let Some(next) = out.get_mut(bit / 8 + 1) {
            *next |= (value >> 8) as u8;
        }
    }
    out
}

/// Unpacks `count` septets after `fill_bits` bits; stops early if the octets run out.
pub fn gsm7_unpack(octets: &[u8], count: usize, fill_bits: u8) -> Vec<u8> {
    let fill = usize::from(fill_bits.min(6));
    let available = (octets.len() * 8).saturating_sub(fill) / 7;
    let mut out = Vec::with_capacity(count.min(available));
    for i in 0..count.min(available) {
        let bit = fill + i * 7;
        let lo = u16::from(octets[bit / 8]);
        let hi = u16::from(octets.get(bit / 8 + 1).copied().unwrap_or(0));
        out.push((((hi << 8 | lo) >> (bit % 8)) & 0x7F) as u8);
    }
    out
}

/// Text to UCS-2 as SMSCs and handsets use it: UTF-16BE, so characters outside the BMP
/// (emoji) take a surrogate pair.
pub fn ucs2_encode(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// UTF-16BE to text; an odd last octet or an unpaired surrogate becomes U+FFFD.
pub fn ucs2_decode(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]])).collect();
    let mut s = String::from_utf16_lossy(&units);
    if bytes.len() % 2 == 1 {
        s.push(char::REPLACEMENT_CHARACTER);
    }
    s
}

pub fn latin1_decode(bytes: &[u8]) -> String {
    crate::pdu::latin1(bytes)
}

pub fn latin1_encode(text: &str) -> Result<Vec<u8>, TextError> {
    text.chars().map(|c| u8::try_from(u32::from(c)).map_err(|_| TextError::NotLatin1(c))).collect()
}

/// The encodings a message is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// GSM 03.38 default alphabet, data_coding 0.
    Gsm7,
    /// UTF-16BE, data_coding 8.
    Ucs2,
}

impl Encoding {
    pub fn data_coding(self) -> u8 {
        match self {
            Encoding::Gsm7 => 0x00,
            Encoding::Ucs2 => 0x08,
        }
    }
}

/// GSM-7 when every character has a GSM-7 form, else UCS-2 (what handsets and Twilio do).
pub fn choose_encoding(text: &str) -> Encoding {
    if is_gsm7(text) {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    }
}

/// How the octets of a received message read, by data_coding (§5.2.19 and TS 23.038 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alphabet {
    /// GSM 03.38 septets, one per octet.
    Gsm7,
    /// ASCII (IA5, data_coding 1) or Latin-1 (data_coding 3): one char per octet.
    Latin1,
    Ucs2,
    /// 8-bit data: not text.
    Binary,
}

impl Alphabet {
    pub fn from_data_coding(dcs: u8) -> Alphabet {
        match dcs {
            0x00 => Alphabet::Gsm7,
            0x01 | 0x03 => Alphabet::Latin1,
            0x08 => Alphabet::Ucs2,
            0x02 | 0x04 => Alphabet::Binary,
            // General data coding group (TS 23.038 §4, 00xx): bits 3-2 are the alphabet.
            0x10..=0x3F => match (dcs >> 2) & 0x03 {
                0 => Alphabet::Gsm7,
                1 => Alphabet::Binary,
                _ => Alphabet::Ucs2,
            },
            // Message waiting indication groups: GSM-7, or UCS-2 for 1110.
            0xC0..=0xDF => Alphabet::Gsm7,
            0xE0..=0xEF => Alphabet::Ucs2,
            // Data coding/message class (1111): bit 2 chooses 8-bit data.
            0xF0..=0xFF if dcs & 0x04 != 0 => Alphabet::Binary,
            0xF0..=0xFF => Alphabet::Gsm7,
            // SMPP's other values (JIS, Cyrillic, Hebrew, pictogram, music codes, KS C 5601)
            // are rarely met; reading them as Latin-1 keeps every octet visible.
            _ => Alphabet::Latin1,
        }
    }
}

/// The text of a received message's user data (UDH already removed).
pub fn decode(data_coding: u8, bytes: &[u8]) -> String {
    match Alphabet::from_data_coding(data_coding) {
        Alphabet::Gsm7 => gsm7_decode(bytes),
        Alphabet::Ucs2 => ucs2_decode(bytes),
        Alphabet::Latin1 | Alphabet::Binary => latin1_decode(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm7_round_trip_with_extension() {
        let text = "Price: 5€ [a] {b} \\ ^ ~ | @£$¥ΔΩ ÄÖÑÜ§¿äöñüà\u{0C}end";
        let septets = gsm7_encode(text).unwrap();
        assert_eq!(gsm7_decode(&septets), text);
        assert_eq!(&gsm7_encode("€").unwrap(), &[0x1B, 0x65]);
        assert_eq!(&gsm7_encode("[]").unwrap(), &[0x1B, 0x3C, 0x1B, 0x3E]);
        assert_eq!(&gsm7_encode("@A").unwrap(), &[0x00, 0x41]);
        assert_eq!(gsm7_encode("Жx"), Err(TextError::NotGsm7('Ж')));
        assert_eq!(gsm7_encode("\u{1B}"), Err(TextError::NotGsm7('\u{1B}')));
    }

    #[test]
    fn gsm7_decode_is_total() {
        assert_eq!(gsm7_decode(&[0x41, 0x1B]), "A");
        // Unknown extension: the basic character.
        assert_eq!(gsm7_decode(&[0x1B, 0x41]), "A");
        assert_eq!(gsm7_decode(&[0x80, 0xFF]), "\u{FFFD}\u{FFFD}");
        assert_eq!(gsm7_decode(&[0x1B, 0x1B, 0x41]), " A");
    }

    #[test]
    fn gsm7_packing() {
        // TS 23.038's classic example: "hellohello" packs to E8329BFD4697D9EC37.
        let septets = gsm7_encode("hellohello").unwrap();
        let packed = gsm7_pack(&septets, 0);
        assert_eq!(packed, [0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37]);
        assert_eq!(gsm7_unpack(&packed, 10, 0), septets);
        // Eight septets fill seven octets exactly.
        assert_eq!(gsm7_pack(&[0x7F; 8], 0), [0xFF; 7]);
        for fill in 0..7 {
            let s: Vec<u8> = (0..=0x7F).collect();
            let p = gsm7_pack(&s, fill);
            assert_eq!(p.len(), (usize::from(fill) + 128 * 7).div_ceil(8));
            assert_eq!(gsm7_unpack(&p, s.len(), fill), s, "fill {fill}");
        }
        assert_eq!(gsm7_unpack(&[0xFF], 5, 0).len(), 1);
    }

    #[test]
    fn ucs2_with_surrogates() {
        let text = "Привет 👋🏽!";
        let bytes = ucs2_encode(text);
        assert_eq!(&bytes[..2], &[0x04, 0x1F]);
        assert_eq!(&ucs2_encode("😀"), &[0xD8, 0x3D, 0xDE, 0x00]);
        assert_eq!(ucs2_decode(&bytes), text);
        assert_eq!(ucs2_decode(&[0xD8, 0x3D, 0x00]), "\u{FFFD}\u{FFFD}");
    }

    #[test]
    fn latin1_and_choice() {
        assert_eq!(latin1_decode(&[0x63, 0x61, 0x66, 0xE9]), "café");
        assert_eq!(latin1_encode("café").unwrap(), [0x63, 0x61, 0x66, 0xE9]);
        assert_eq!(choose_encoding("Hello [world] €5"), Encoding::Gsm7);
        assert_eq!(choose_encoding("Hello 😀"), Encoding::Ucs2);
        assert_eq!(choose_encoding("ç"), Encoding::Ucs2);
        assert_eq!(decode(3, &[0xE9]), "é");
        assert_eq!(decode(0, &[0x1B, 0x65]), "€");
        assert_eq!(decode(8, &[0x00, 0x41]), "A");
        assert_eq!(decode(0x18, &[0x00, 0x41]), "A");
        assert_eq!(Alphabet::from_data_coding(0xF4), Alphabet::Binary);
        assert_eq!(Alphabet::from_data_coding(0xF1), Alphabet::Gsm7);
    }
}
