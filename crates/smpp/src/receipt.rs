//! Delivery receipts: a deliver_sm whose esm_class says "SMSC delivery receipt", its text
//! in the de facto format of SMPP 3.4 Appendix B
//! (`id:IIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD
//! err:E text:...`) and its receipted_message_id / message_state TLVs, which win when both
//! are present.
//!
//! SMSCs vary: keys in any case and order, `submit_date` for `submit date`, fields left out,
//! dates with seconds. The parser takes what it finds and leaves the rest `None`.

use crate::pdu::Sm;
use crate::status::TwilioError;
use crate::text;

/// message_state (SMPP 3.4 §5.2.28, 5.0 adds SCHEDULED and SKIPPED), and the receipt's `stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageState {
    Scheduled,
    Enroute,
    Delivered,
    Expired,
    Deleted,
    Undeliverable,
    Accepted,
    Unknown,
    Rejected,
    Skipped,
}

impl MessageState {
    /// From the message_state TLV's value.
    pub fn from_tlv(value: u8) -> Option<MessageState> {
        use MessageState::*;
        Some(match value {
            0 => Scheduled,
            1 => Enroute,
            2 => Delivered,
            3 => Expired,
            4 => Deleted,
            5 => Undeliverable,
            6 => Accepted,
            7 => Unknown,
            8 => Rejected,
            9 => Skipped,
            _ => return None,
        })
    }

    /// From a receipt's `stat:` value, short (DELIVRD) or spelt out (DELIVERED), any case.
    pub fn from_stat(stat: &str) -> Option<MessageState> {
        use MessageState::*;
        Some(match stat.to_ascii_uppercase().as_str() {
            "SCHEDULED" | "SCHEDLD" => Scheduled,
            "ENROUTE" => Enroute,
            "DELIVRD" | "DELIVERED" => Delivered,
            "EXPIRED" => Expired,
            "DELETED" => Deleted,
            "UNDELIV" | "UNDELIVERABLE" => Undeliverable,
            "ACCEPTD" | "ACCEPTED" => Accepted,
            "UNKNOWN" => Unknown,
            "REJECTD" | "REJECTED" => Rejected,
            "SKIPPED" => Skipped,
            _ => return None,
        })
    }

    /// Whether the message will not change state again.
    pub fn is_final(self) -> bool {
        !matches!(self, MessageState::Scheduled | MessageState::Enroute | MessageState::Accepted)
    }
}

/// A receipt's date, `YYMMDDhhmm` or `YYMMDDhhmmss`, as written (the SMSC's local time, no zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptDate {
    /// Two digits, as sent.
    pub year: u8,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: Option<u8>,
}

impl ReceiptDate {
    pub fn parse(s: &str) -> Option<ReceiptDate> {
        if !(s.len() == 10 || s.len() == 12) || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let two = |i: usize| -> u8 { s.as_bytes()[i..i + 2].iter().fold(0, |n, d| n * 10 + (d - b'0')) };
        let date = ReceiptDate {
            year: two(0),
            month: two(2),
            day: two(4),
            hour: two(6),
            minute: two(8),
            second: (s.len() == 12).then(|| two(10)),
        };
        let valid = (1..=12).contains(&date.month)
            && (1..=31).contains(&date.day)
            && date.hour < 24
            && date.minute < 60
            && date.second.unwrap_or(0) < 61;
        valid.then_some(date)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The SMSC's id of the receipted message (what submit_sm_resp returned).
    pub message_id: String,
    pub state: Option<MessageState>,
    /// `err:` as sent (often a three-digit GSM MAP error).
    pub error: Option<String>,
    pub submitted: Option<String>,
    pub delivered: Option<String>,
    pub submit_date: Option<ReceiptDate>,
    pub done_date: Option<ReceiptDate>,
    /// The first characters of the message, if the SMSC echoes them.
    pub text: Option<String>,
}

const KEYS: [&str; 9] = ["id", "sub", "dlvrd", "submit date", "submit_date", "done date", "done_date", "stat", "err"];

impl Receipt {
    /// Reads a receipt's text; `None` without an `id:`.
    pub fn parse(text: &str) -> Option<Receipt> {
        let lower = text.to_ascii_lowercase();
        // `text:` runs to the end and may hold anything: cut it off before looking for keys.
        let text_at = find_key(&lower, "text", 0);
        let head_end = text_at.map_or(text.len(), |(key_start, _)| key_start);
        let mut found: Vec<(usize, usize, &str)> = KEYS
            .iter()
            .filter_map(|&k| find_key(&lower[..head_end], k, 0).map(|(start, value)| (start, value, k)))
            .collect();
        found.sort();
        let value = |key: &str| -> Option<String> {
            let i = found.iter().position(|(_, _, k)| *k == key)?;
            let value_end = found.get(i + 1).map_or(head_end, |next| next.0);
            let rest = text[found[i].1..value_end.max(found[i].1)].trim_start_matches(' ');
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            Some(rest[..end].to_string()).filter(|v| !v.is_empty())
        };
        let message_id = value("id")?;
        let date = |a: &str, b: &str| value(a).or_else(|| value(b)).and_then(|d| ReceiptDate::parse(&d));
        Some(Receipt {
            state: value("stat").and_then(|s| MessageState::from_stat(&s)),
            error: value("err"),
            submitted: value("sub"),
            delivered: value("dlvrd"),
            submit_date: date("submit date", "submit_date"),
            done_date: date("done date", "done_date"),
            text: text_at.map(|(_, v)| text[v..].to_string()),
            message_id,
        })
    }

    /// The receipt a deliver_sm carries: its text and TLVs. `None` if it is not a receipt or
    /// names no message.
    pub fn from_sm(sm: &Sm) -> Option<Receipt> {
        if !sm.is_receipt() {
            return None;
        }
        let body = text::decode(sm.data_coding, sm.payload());
        let parsed = Receipt::parse(&body);
        let tlv_id = sm.tlvs.receipted_message_id().filter(|id| !id.is_empty());
        let tlv_state = sm.tlvs.message_state().and_then(MessageState::from_tlv);
        let mut receipt = match (parsed, tlv_id) {
            (Some(mut r), Some(id)) => {
                r.message_id = id;
                r
            }
            (Some(r), None) => r,
            (None, Some(id)) => Receipt {
                message_id: id,
                state: None,
                error: None,
                submitted: None,
                delivered: None,
                submit_date: None,
                done_date: None,
                text: None,
            },
            (None, None) => return None,
        };
        if tlv_state.is_some() {
            receipt.state = tlv_state;
        }
        Some(receipt)
    }

    /// `err:` as a number, if it is one.
    pub fn error_code(&self) -> Option<u16> {
        self.error.as_deref()?.parse().ok()
    }

    /// The Twilio error a failed delivery maps to; `None` while it is not known to have failed.
    pub fn twilio_error(&self) -> Option<TwilioError> {
        TwilioError::from_receipt(self.state?, self.error_code())
    }
}

/// Where `key:` starts (preceded by the start or whitespace) at or after `from`, and where
/// its value starts.
fn find_key(lower: &str, key: &str, from: usize) -> Option<(usize, usize)> {
    let mut at = from;
    while let Some(i) = lower.get(at..)?.find(key) {
        let start = at + i;
        let boundary = start == 0 || lower[..start].ends_with(char::is_whitespace);
        let after = &lower[start + key.len()..];
        let colon = after.len() - after.trim_start_matches(' ').len();
        if boundary && after[colon..].starts_with(':') {
            return Some((start, start + key.len() + colon + 1));
        }
        at = start + key.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{esm_class, tag};

    #[test]
    fn the_standard_form() {
        let r = Receipt::parse(
            "id:msg1 sub:001 dlvrd:001 submit date:2401010000 done date:2401010005 stat:DELIVRD err:000 text:Hello id:x",
        )
        .unwrap();
        assert_eq!(r.message_id, "msg1");
        assert_eq!(r.state, Some(MessageState::Delivered));
        assert_eq!(r.error.as_deref(), Some("000"));
        assert_eq!(r.error_code(), Some(0));
        assert_eq!(r.submitted.as_deref(), Some("001"));
        assert_eq!(r.delivered.as_deref(), Some("001"));
        let d = r.done_date.unwrap();
        assert_eq!((d.year, d.month, d.day, d.hour, d.minute, d.second), (24, 1, 1, 0, 5, None));
        assert_eq!(r.text.as_deref(), Some("Hello id:x"));
        assert_eq!(r.twilio_error(), None);
    }

    #[test]
    fn tolerant() {
        let r = Receipt::parse("ID:0A1B2C STAT:undeliv Err:001 Submit_Date:240101123059").unwrap();
        assert_eq!(r.message_id, "0A1B2C");
        assert_eq!(r.state, Some(MessageState::Undeliverable));
        assert_eq!(r.submit_date.unwrap().second, Some(59));
        assert_eq!(r.done_date, None);
        assert_eq!(r.text, None);
        assert_eq!(r.twilio_error().map(TwilioError::code), Some(30005));
        // "id" inside another word is not the key; a bad date is left out.
        let r = Receipt::parse("xid:no id: 77 done date:9913011200 stat:EXPIRED").unwrap();
        assert_eq!(r.message_id, "77");
        assert_eq!(r.done_date, None);
        assert_eq!(r.state, Some(MessageState::Expired));
        assert_eq!(Receipt::parse("stat:DELIVRD"), None);
        assert_eq!(Receipt::parse("id: stat:DELIVRD"), None);
        assert_eq!(Receipt::parse(""), None);
        assert_eq!(Receipt::parse("id:1 stat:WEIRD").unwrap().state, None);
    }

    #[test]
    fn all_stats() {
        for (s, st) in [
            ("DELIVRD", MessageState::Delivered),
            ("EXPIRED", MessageState::Expired),
            ("DELETED", MessageState::Deleted),
            ("UNDELIV", MessageState::Undeliverable),
            ("ACCEPTD", MessageState::Accepted),
            ("UNKNOWN", MessageState::Unknown),
            ("REJECTD", MessageState::Rejected),
            ("ENROUTE", MessageState::Enroute),
        ] {
            assert_eq!(MessageState::from_stat(s), Some(st));
        }
        assert_eq!(MessageState::from_tlv(2), Some(MessageState::Delivered));
        assert_eq!(MessageState::from_tlv(10), None);
        assert!(!MessageState::Enroute.is_final());
        assert!(MessageState::Rejected.is_final());
    }

    #[test]
    fn from_a_deliver_sm() {
        let mut sm = Sm {
            esm_class: esm_class::DELIVERY_RECEIPT,
            short_message: b"id:abc sub:001 dlvrd:000 submit date:2401010000 done date:2401010000 stat:UNDELIV err:027 text:".to_vec(),
            ..Sm::default()
        };
        let r = Receipt::from_sm(&sm).unwrap();
        assert_eq!((r.message_id.as_str(), r.state), ("abc", Some(MessageState::Undeliverable)));
        assert_eq!(r.twilio_error().map(TwilioError::code), Some(30003));
        // TLVs win.
        sm.tlvs.set(tag::RECEIPTED_MESSAGE_ID, b"ABC-1\0".to_vec());
        sm.tlvs.set(tag::MESSAGE_STATE, vec![2]);
        let r = Receipt::from_sm(&sm).unwrap();
        assert_eq!((r.message_id.as_str(), r.state), ("ABC-1", Some(MessageState::Delivered)));
        // TLVs alone.
        sm.short_message.clear();
        let r = Receipt::from_sm(&sm).unwrap();
        assert_eq!(r.message_id, "ABC-1");
        // Not a receipt.
        sm.esm_class = 0;
        assert_eq!(Receipt::from_sm(&sm), None);
    }
}
