//! Long messages: counting segments the way handsets and Twilio do, cutting text into
//! parts that carry a concatenation user data header (3GPP TS 23.040 §9.2.3.24.1/.8) or
//! SMPP's SAR TLVs, and reading a received part's header.
//!
//! | encoding | one message | per part, 8-bit ref UDH | per part, 16-bit ref UDH or SAR |
//! |---|---|---|---|
//! | GSM-7 | 160 septets | 153 | 152 |
//! | UCS-2 | 70 UTF-16 units | 67 | 66 |
//!
//! An extension character (ESC + septet) and a surrogate pair are never split between parts.
//! With SAR the SMSC writes the header itself and may pick a 16-bit reference, so parts are
//! cut to the smaller size.

use crate::pdu::{esm_class, tag, Sm, Tlvs};
use crate::text::{self, Encoding, TextError};

/// At most this many parts (the UDH's total is one octet).
pub const MAX_PARTS: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentCount {
    pub encoding: Encoding,
    /// Parts the message is sent as.
    pub segments: usize,
    /// Septets (GSM-7, extension characters count 2) or UTF-16 code units (UCS-2).
    pub units: usize,
}

/// How many parts `text` becomes, with 8-bit reference headers (what Twilio bills).
pub fn count_segments(text: &str) -> SegmentCount {
    let encoding = text::choose_encoding(text);
    let units: Vec<usize> = unit_lengths(text, encoding).collect();
    let total = units.iter().sum();
    let (single, multi) = capacity(encoding, Concat::Udh8 { reference: 0 });
    let segments = if total <= single { 1 } else { chunk(&units, multi).len() };
    SegmentCount { encoding, segments, units: total }
}

/// How parts are tied together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concat {
    /// UDH information element 0x00: 8-bit reference.
    Udh8 { reference: u8 },
    /// UDH information element 0x08: 16-bit reference.
    Udh16 { reference: u16 },
    /// The sar_msg_ref_num / sar_total_segments / sar_segment_seqnum TLVs.
    Sar { reference: u16 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitOptions {
    /// `None` chooses with [`text::choose_encoding`].
    pub encoding: Option<Encoding>,
    pub concat: Concat,
    /// Pack GSM-7 septets into octets (after the UDH, with fill bits). Most SMSCs expect
    /// data_coding 0 unpacked, one septet per octet: the default.
    pub gsm7_packed: bool,
}

impl SplitOptions {
    pub fn new(concat: Concat) -> SplitOptions {
        SplitOptions { encoding: None, concat, gsm7_packed: false }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SplitError {
    #[error(transparent)]
    Text(#[from] TextError),
    #[error("the message needs {0} parts; at most 255 can be joined")]
    TooManyParts(usize),
}

/// One part to send: what differs between the submit_sm of the parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub data_coding: u8,
    /// [`esm_class::UDHI`] when `short_message` starts with a UDH, else 0.
    pub esm_class: u8,
    pub short_message: Vec<u8>,
    /// The SAR TLVs, with [`Concat::Sar`].
    pub tlvs: Tlvs,
}

impl Part {
    /// `base` (addresses, registered_delivery...) carrying this part.
    pub fn to_sm(&self, base: &Sm) -> Sm {
        let mut sm = base.clone();
        sm.data_coding = self.data_coding;
        sm.esm_class = (sm.esm_class & !esm_class::UDHI) | self.esm_class;
        sm.short_message = self.short_message.clone();
        for t in &self.tlvs.0 {
            sm.tlvs.set(t.tag, t.value.clone());
        }
        sm
    }
}

/// Cuts `text` into the parts to submit: one part without header if it fits.
pub fn split(text: &str, options: &SplitOptions) -> Result<Vec<Part>, SplitError> {
    let encoding = options.encoding.unwrap_or_else(|| text::choose_encoding(text));
    if encoding == Encoding::Gsm7 {
        if let Some(c) = text.chars().find(|&c| text::gsm7_len(c).is_none()) {
            return Err(TextError::NotGsm7(c).into());
        }
    }
    let units: Vec<usize> = unit_lengths(text, encoding).collect();
    let (single, multi) = capacity(encoding, options.concat);
    let total: usize = units.iter().sum();
    let data_coding = encoding.data_coding();
    let encode = |chars: &str| -> Vec<u8> {
        match encoding {
            // Checked above: every character is GSM-7.
            Encoding::Gsm7 => text::gsm7_encode(chars).unwrap_or_default(),
            Encoding::Ucs2 => text::ucs2_encode(chars),
        }
    };
    if total <= single {
        let mut body = encode(text);
        if encoding == Encoding::Gsm7 && options.gsm7_packed {
            body = text::gsm7_pack(&body, 0);
        }
        return Ok(vec![Part { data_coding, esm_class: 0, short_message: body, tlvs: Tlvs::default() }]);
    }
    let chunks = chunk(&units, multi);
    if chunks.len() > MAX_PARTS {
        return Err(SplitError::TooManyParts(chunks.len()));
    }
    let count = chunks.len() as u8;
    let char_starts: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
    let mut parts = Vec::with_capacity(chunks.len());
    for (i, (from, to)) in chunks.into_iter().enumerate() {
        let seq = i as u8 + 1;
        let body = encode(&text[char_starts[from]..char_starts[to]]);
        let (udh, tlvs) = match options.concat {
            Concat::Udh8 { reference } => (vec![0x05, 0x00, 0x03, reference, count, seq], Tlvs::default()),
            Concat::Udh16 { reference } => {
                let [hi, lo] = reference.to_be_bytes();
                (vec![0x06, 0x08, 0x04, hi, lo, count, seq], Tlvs::default())
            }
            Concat::Sar { reference } => {
                let mut tlvs = Tlvs::default();
                tlvs.set(tag::SAR_MSG_REF_NUM, reference.to_be_bytes().to_vec());
                tlvs.set(tag::SAR_TOTAL_SEGMENTS, vec![count]);
                tlvs.set(tag::SAR_SEGMENT_SEQNUM, vec![seq]);
                (Vec::new(), tlvs)
            }
        };
        let body = if encoding == Encoding::Gsm7 && options.gsm7_packed {
            text::gsm7_pack(&body, fill_bits(udh.len()))
        } else {
            body
        };
        let esm_class = if udh.is_empty() { 0 } else { esm_class::UDHI };
        let mut short_message = udh;
        short_message.extend_from_slice(&body);
        parts.push(Part { data_coding, esm_class, short_message, tlvs });
    }
    Ok(parts)
}

/// Fill bits that put the first septet after a `udh_octets`-long header on a septet boundary.
pub fn fill_bits(udh_octets: usize) -> u8 {
    ((7 - (udh_octets * 8) % 7) % 7) as u8
}

/// (one-part capacity, per-part capacity) in units of the encoding.
fn capacity(encoding: Encoding, concat: Concat) -> (usize, usize) {
    let small_ref = matches!(concat, Concat::Udh8 { .. });
    match (encoding, small_ref) {
        (Encoding::Gsm7, true) => (160, 153),
        (Encoding::Gsm7, false) => (160, 152),
        (Encoding::Ucs2, true) => (70, 67),
        (Encoding::Ucs2, false) => (70, 66),
    }
}

/// Units per character: septets, or UTF-16 code units. A character GSM-7 lacks counts 1
/// (callers check representability first).
fn unit_lengths(text: &str, encoding: Encoding) -> impl Iterator<Item = usize> + '_ {
    text.chars().map(move |c| match encoding {
        Encoding::Gsm7 => text::gsm7_len(c).unwrap_or(1),
        Encoding::Ucs2 => c.len_utf16(),
    })
}

/// Greedy cut into `[from, to)` character ranges of at most `cap` units, no character split.
fn chunk(units: &[usize], cap: usize) -> Vec<(usize, usize)> {
    let mut chunks = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, &n) in units.iter().enumerate() {
        if used + n > cap {
            chunks.push((start, i));
            start = i;
            used = 0;
        }
        used += n;
    }
    if start < units.len() || chunks.is_empty() {
        chunks.push((start, units.len()));
    }
    chunks
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UdhError {
    #[error("the user data is too short for its header")]
    Truncated,
    #[error("an information element runs past the header")]
    BadElement,
}

/// A user data header, its information elements checked to lie within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Udh<'a> {
    elements: &'a [u8],
}

/// Where a part sits in its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Concatenation {
    pub reference: u16,
    pub total: u8,
    /// 1-based.
    pub seq: u8,
}

impl<'a> Udh<'a> {
    /// Splits user data that starts with a UDH (esm_class UDHI) into the header and the rest.
    pub fn parse(user_data: &'a [u8]) -> Result<(Udh<'a>, &'a [u8]), UdhError> {
        let (&udhl, rest) = user_data.split_first().ok_or(UdhError::Truncated)?;
        if rest.len() < usize::from(udhl) {
            return Err(UdhError::Truncated);
        }
        let (elements, body) = rest.split_at(usize::from(udhl));
        let mut i = 0;
        while i < elements.len() {
            let len = *elements.get(i + 1).ok_or(UdhError::BadElement)? as usize;
            i += 2 + len;
            if i > elements.len() {
                return Err(UdhError::BadElement);
            }
        }
        Ok((Udh { elements }, body))
    }

    /// Octets of the whole header, its length octet included.
    pub fn len(&self) -> usize {
        self.elements.len() + 1
    }

    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }

    /// (identifier, data) of each information element.
    pub fn elements(&self) -> impl Iterator<Item = (u8, &'a [u8])> + 'a {
        let mut rest = self.elements;
        std::iter::from_fn(move || {
            let [iei, len, tail @ ..] = rest else { return None };
            let (data, next) = tail.split_at((*len as usize).min(tail.len()));
            rest = next;
            Some((*iei, data))
        })
    }

    /// The concatenation element (0x00 or 0x08), if present and well-formed.
    pub fn concatenation(&self) -> Option<Concatenation> {
        self.elements().find_map(|(iei, data)| match (iei, data) {
            (0x00, &[reference, total, seq]) => Some(Concatenation { reference: u16::from(reference), total, seq }),
            (0x08, &[hi, lo, total, seq]) => Some(Concatenation { reference: u16::from_be_bytes([hi, lo]), total, seq }),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(parts: &[Part], encoding: Encoding) -> String {
        parts
            .iter()
            .map(|p| {
                let body = if p.esm_class & esm_class::UDHI != 0 {
                    Udh::parse(&p.short_message).unwrap().1
                } else {
                    &p.short_message[..]
                };
                match encoding {
                    Encoding::Gsm7 => text::gsm7_decode(body),
                    Encoding::Ucs2 => text::ucs2_decode(body),
                }
            })
            .collect()
    }

    #[test]
    fn gsm7_counts() {
        let c = |s: &str| count_segments(s).segments;
        assert_eq!(c(""), 1);
        assert_eq!(c(&"a".repeat(160)), 1);
        assert_eq!(c(&"a".repeat(161)), 2);
        assert_eq!(c(&"a".repeat(306)), 2);
        assert_eq!(c(&"a".repeat(307)), 3);
        // € takes two septets: 80 of them are exactly 160.
        assert_eq!(count_segments(&"€".repeat(80)), SegmentCount { encoding: Encoding::Gsm7, segments: 1, units: 160 });
        assert_eq!(c(&"€".repeat(81)), 2);
        // 152 plain + € would be 154 septets in the first part: the € moves to the second.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(10));
        let parts = split(&text, &SplitOptions::new(Concat::Udh8 { reference: 7 })).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].short_message.len(), 6 + 152);
        assert_eq!(&parts[1].short_message[6..8], &[0x1B, 0x65]);
        assert_eq!(joined(&parts, Encoding::Gsm7), text);
    }

    #[test]
    fn ucs2_counts_never_split_surrogates() {
        assert_eq!(count_segments(&"Ж".repeat(70)).segments, 1);
        assert_eq!(count_segments(&"Ж".repeat(71)).segments, 2);
        // 400 characters: 360 Cyrillic letters and 40 emoji (2 units each) = 440 units.
        // 440 / 67 needs 7 parts; an emoji that does not fit wastes at most one unit of a
        // part, and 7 * 66 = 462 >= 440, so 7 it stays.
        let text: String = (0..400).map(|i| if i % 10 == 9 { '😀' } else { 'Ж' }).collect();
        assert_eq!(text.chars().count(), 400);
        let count = count_segments(&text);
        assert_eq!(count.units, 440);
        assert_eq!(count.segments, 7);
        let parts = split(&text, &SplitOptions::new(Concat::Udh8 { reference: 1 })).unwrap();
        assert_eq!(parts.len(), 7);
        for p in &parts {
            let body = &p.short_message[6..];
            assert!(body.len() <= 134);
            // No part ends on a high surrogate.
            let last = u16::from_be_bytes([body[body.len() - 2], body[body.len() - 1]]);
            assert!(!(0xD800..0xDC00).contains(&last));
            assert_eq!(p.data_coding, 8);
            assert_eq!(p.esm_class, esm_class::UDHI);
        }
        assert_eq!(joined(&parts, Encoding::Ucs2), text);
    }

    #[test]
    fn udh_and_sar_forms() {
        let text = "x".repeat(200);
        let p16 = split(&text, &SplitOptions::new(Concat::Udh16 { reference: 0x1234 })).unwrap();
        assert_eq!(&p16[1].short_message[..7], &[0x06, 0x08, 0x04, 0x12, 0x34, 2, 2]);
        assert_eq!(p16[0].short_message.len(), 7 + 152);
        let (udh, _) = Udh::parse(&p16[1].short_message).unwrap();
        assert_eq!(udh.concatenation(), Some(Concatenation { reference: 0x1234, total: 2, seq: 2 }));

        let sar = split(&text, &SplitOptions::new(Concat::Sar { reference: 9 })).unwrap();
        assert_eq!(sar.len(), 2);
        assert_eq!(sar[0].esm_class, 0);
        assert_eq!(sar[0].short_message.len(), 152);
        assert_eq!(sar[1].tlvs.sar_msg_ref_num(), Some(9));
        assert_eq!(sar[1].tlvs.sar_total_segments(), Some(2));
        assert_eq!(sar[1].tlvs.sar_segment_seqnum(), Some(2));
        let sm = sar[1].to_sm(&Sm::default());
        assert_eq!(sm.tlvs.sar_segment_seqnum(), Some(2));

        let single = split("hi", &SplitOptions::new(Concat::Udh8 { reference: 1 })).unwrap();
        assert_eq!(single, [Part { data_coding: 0, esm_class: 0, short_message: b"hi".to_vec(), tlvs: Tlvs::default() }]);
    }

    #[test]
    fn packed_gsm7_parts() {
        let text = "hello ".repeat(40);
        let opts = SplitOptions { gsm7_packed: true, ..SplitOptions::new(Concat::Udh8 { reference: 3 }) };
        let parts = split(&text, &opts).unwrap();
        assert_eq!(parts.len(), 2);
        // 6 octets of UDH + 153 septets after 1 fill bit = 6 + 134 octets: the 140 of an SMS.
        assert_eq!(parts[0].short_message.len(), 140);
        assert_eq!(fill_bits(6), 1);
        assert_eq!(fill_bits(7), 0);
        let (_, body) = Udh::parse(&parts[0].short_message).unwrap();
        let septets = text::gsm7_unpack(body, 153, 1);
        assert_eq!(text::gsm7_decode(&septets), text[..153]);
    }

    #[test]
    fn errors() {
        let opts = SplitOptions { encoding: Some(Encoding::Gsm7), ..SplitOptions::new(Concat::Udh8 { reference: 0 }) };
        assert_eq!(split("Ж", &opts), Err(SplitError::Text(TextError::NotGsm7('Ж'))));
        let huge = "a".repeat(153 * 256);
        assert_eq!(split(&huge, &SplitOptions::new(Concat::Udh8 { reference: 0 })), Err(SplitError::TooManyParts(256)));
        assert_eq!(Udh::parse(&[]), Err(UdhError::Truncated));
        assert_eq!(Udh::parse(&[5, 0, 3, 1]), Err(UdhError::Truncated));
        assert_eq!(Udh::parse(&[3, 0, 3, 1]), Err(UdhError::BadElement));
        let (udh, rest) = Udh::parse(&[0, b'a']).unwrap();
        assert!(udh.is_empty());
        assert_eq!(udh.concatenation(), None);
        assert_eq!(rest, b"a");
    }
}
