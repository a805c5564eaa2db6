//! Any byte stream, pushed in chunks whose sizes come from the input: the framer never
//! panics, never holds more than its bounds, and yields the same messages however the
//! stream is cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip::StreamFramer;

fn frame(data: &[u8], chunk: usize) -> (Vec<Vec<u8>>, bool) {
    let mut framer = StreamFramer::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        framer.push(piece);
        loop {
            match framer.pop() {
                Ok(Some(msg)) => out.push(msg),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
        assert!(framer.buffered() <= sip::MAX_HEADER_BYTES + sip::MAX_BODY_BYTES + piece.len());
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let (whole, whole_failed) = frame(rest, rest.len());
    let (pieces, pieces_failed) = frame(rest, usize::from(first % 17) + 1);
    // Cutting the stream differently may only stop earlier on an error, never change a message.
    let n = whole.len().min(pieces.len());
    assert_eq!(whole[..n], pieces[..n]);
    if !whole_failed && !pieces_failed {
        assert_eq!(whole, pieces);
    }
    for msg in &whole {
        let _ = sip::parse_message(msg);
    }
});
