//! Short-message text from any bytes: GSM-7 (unpacked and packed), UCS-2 and data_coding
//! decoding never panic; re-encoding decoded GSM-7 text is stable; segmenting loses no
//! character; receipt and UDH parsing take anything; and a reassembler fed arbitrary parts
//! stays within its bounds.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use smpp::reassembly::{Fragment, Reassembler, ReassemblerConfig};
use smpp::segment::{Concatenation, Udh};
use smpp::text;
use smpp::{Address, Concat, Receipt, SplitOptions};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };

    let gsm = text::gsm7_decode(rest);
    if let Ok(septets) = text::gsm7_encode(&gsm) {
        assert_eq!(text::gsm7_decode(&septets), gsm);
    }
    let _ = text::ucs2_decode(rest);
    let _ = text::decode(selector, rest);
    let fill = selector % 7;
    let septets: Vec<u8> = rest.iter().map(|b| b & 0x7F).collect();
    let packed = text::gsm7_pack(&septets, fill);
    assert_eq!(text::gsm7_unpack(&packed, septets.len(), fill), septets);
    let _ = text::gsm7_unpack(rest, usize::from(selector), fill);

    let lossy = String::from_utf8_lossy(rest);
    let _ = Receipt::parse(&lossy);
    if let Ok((udh, body)) = Udh::parse(rest) {
        assert_eq!(udh.len() + body.len(), rest.len());
        let _ = udh.concatenation();
        let _ = udh.elements().count();
    }

    // Segmenting: the parts hold the whole text, in order.
    if lossy.chars().count() <= 2000 {
        let concat = match selector % 3 {
            0 => Concat::Udh8 { reference: selector },
            1 => Concat::Udh16 { reference: u16::from(selector) << 8 },
            _ => Concat::Sar { reference: 7 },
        };
        let count = smpp::count_segments(&lossy);
        if let Ok(parts) = smpp::split(&lossy, &SplitOptions::new(concat)) {
            if matches!(concat, Concat::Udh8 { .. }) {
                assert_eq!(parts.len(), count.segments);
            }
            let joined: String = parts
                .iter()
                .map(|p| {
                    let body = if p.esm_class & 0x40 != 0 { Udh::parse(&p.short_message).unwrap().1 } else { &p.short_message[..] };
                    assert!(body.len() <= 160);
                    text::decode(p.data_coding, body)
                })
                .collect();
            assert_eq!(joined, lossy);
        }
    }

    // Reassembly: each 5-octet record is (reference, total, seq, time step, length) and
    // that many octets of data.
    let config = ReassemblerConfig { timeout: Duration::from_secs(10), max_sets: 8, max_bytes: 512 };
    let mut r = Reassembler::new(config);
    let mut now = Instant::now();
    let mut input = rest;
    while let [reference, total, seq, step, len, tail @ ..] = input {
        let (body, next) = tail.split_at(usize::from(*len).min(tail.len()));
        input = next;
        now += Duration::from_secs(u64::from(*step % 16));
        for expired in r.handle_timeout(now) {
            assert!(expired.received < usize::from(expired.total));
        }
        let fragment = Fragment {
            source: Address::international(if reference & 0x80 != 0 { "1" } else { "2" }),
            destination: Address::default(),
            concatenation: Concatenation { reference: u16::from(*reference), total: *total, seq: *seq },
            data_coding: if seq & 0x80 != 0 { 8 } else { 0 },
            user_data: body.to_vec(),
        };
        if let Ok(Some(whole)) = r.push(now, fragment) {
            assert_eq!(whole.text, text::decode(whole.data_coding, &whole.user_data));
        }
        assert!(r.len() <= config.max_sets);
        assert!(r.bytes() <= config.max_bytes);
        // Everything due was expired above; what is left is due later.
        assert!(r.poll_timeout().is_none_or(|t| t > now));
    }
});
