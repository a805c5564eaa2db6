//! Cutting a TCP byte stream into whole SIP messages (RFC 3261 §18.3): the header section
//! ends at an empty line and Content-Length, mandatory on streams, gives the body length.

use crate::message::{content_length, find_head, parse_head, ParseError, MAX_HEADER_BYTES};

/// Push bytes as they arrive, pop complete messages. Leading CRLFs (RFC 5626 keep-alives)
/// are skipped. After an error the stream cannot be resynchronised: close the connection.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
    failed: Option<ParseError>,
    /// Bare CRLF keep-alives seen (a "ping"; the driver may answer with a single CRLF).
    keepalives: u64,
}

impl StreamFramer {
    pub fn new() -> StreamFramer {
        StreamFramer::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Bytes held that do not yet form a message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn keepalives(&self) -> u64 {
        self.keepalives
    }

    /// The next complete message's bytes (hand them to [`crate::parse_message`] or the
    /// endpoint), `Ok(None)` if more bytes are needed.
    pub fn pop(&mut self) -> Result<Option<Vec<u8>>, ParseError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        match self.next_message() {
            Ok(found) => Ok(found),
            Err(err) => {
                self.buf = Vec::new();
                self.failed = Some(err.clone());
                Err(err)
            }
        }
    }

    fn next_message(&mut self) -> Result<Option<Vec<u8>>, ParseError> {
        let leading = self.buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
        if leading > 0 {
            self.keepalives += (leading / 2).max(1) as u64;
            self.buf.drain(..leading);
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let Some((_, body_start)) = find_head(&self.buf) else {
            if self.buf.len() > MAX_HEADER_BYTES {
                return Err(ParseError::HeadersTooLarge);
            }
            return Ok(None);
        };
        let head = parse_head(&self.buf[..body_start])?;
        let len = content_length(&head.headers)?.ok_or(ParseError::MissingHeader("Content-Length"))?;
        let total = body_start + len;
        if self.buf.len() < total {
            return Ok(None);
        }
        let rest = self.buf.split_off(total);
        Ok(Some(std::mem::replace(&mut self.buf, rest)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_message, Message};

    fn msg(call_id: &str, body: &str) -> Vec<u8> {
        format!(
            "MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:a@b>\r\nCall-ID: {call_id}\r\nCSeq: 1 MESSAGE\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[test]
    fn pops_messages_split_anywhere() {
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend(msg("one", "hello"));
        stream.extend(b"\r\n");
        stream.extend(msg("two", ""));
        for chunk_size in [1, 3, 7, 64, 4096] {
            let mut framer = StreamFramer::new();
            let mut got = Vec::new();
            for chunk in stream.chunks(chunk_size) {
                framer.push(chunk);
                while let Some(m) = framer.pop().unwrap() {
                    got.push(m);
                }
            }
            assert_eq!(got.len(), 2, "chunk size {chunk_size}");
            let Message::Request(first) = parse_message(&got[0]).unwrap() else { panic!("request") };
            assert_eq!(first.body, b"hello");
            assert_eq!(parse_message(&got[1]).unwrap().headers().call_id(), Some("two"));
            assert_eq!(framer.buffered(), 0);
            assert!(framer.keepalives() >= 2);
        }
    }

    #[test]
    fn content_length_is_mandatory() {
        let mut framer = StreamFramer::new();
        framer.push(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n");
        assert_eq!(framer.pop(), Err(ParseError::MissingHeader("Content-Length")));
        // Poisoned: the stream cannot be resynchronised.
        framer.push(&msg("x", ""));
        assert!(framer.pop().is_err());
    }

    #[test]
    fn bounded_header_buffer() {
        let mut framer = StreamFramer::new();
        framer.push(b"OPTIONS sip:a@b SIP/2.0\r\n");
        let line = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        for _ in 0..1000 {
            framer.push(line);
        }
        assert_eq!(framer.pop(), Err(ParseError::HeadersTooLarge));
    }

    #[test]
    fn waits_for_body() {
        let mut framer = StreamFramer::new();
        let m = msg("x", "0123456789");
        framer.push(&m[..m.len() - 3]);
        assert_eq!(framer.pop(), Ok(None));
        framer.push(&m[m.len() - 3..]);
        assert_eq!(framer.pop().unwrap().unwrap(), m);
    }
}
