//! Cutting a TCP byte stream into whole PDUs: each starts with its command_length.

use crate::pdu::{Header, PduError, HEADER_LEN};

/// A command_length outside `16..=MAX_PDU_LEN`: the stream cannot be resynchronised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unframeable PDU (sequence {}): {error}", header.sequence_number)]
pub struct FrameError {
    /// The offending header, so a generic_nack can name its sequence number.
    pub header: Header,
    pub error: PduError,
}

/// Push bytes as they arrive, pop complete PDUs. Nothing is allocated on a PDU's say-so
/// beyond [`crate::MAX_PDU_LEN`]: the buffer holds what was pushed and no more. After an
/// error every pop repeats it and pushed bytes are dropped: close the connection.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    failed: Option<FrameError>,
}

impl Framer {
    pub fn new() -> Framer {
        Framer::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Bytes held that do not yet form a PDU.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole PDU's bytes (for [`crate::Pdu::parse`]), `Ok(None)` if more are needed.
    pub fn pop(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let Some(header) = Header::parse(&self.buf) else { return Ok(None) };
        let len = match header.check_length() {
            Ok(len) => len,
            Err(error) => {
                let err = FrameError { header, error };
                self.failed = Some(err.clone());
                self.buf = Vec::new();
                return Err(err);
            }
        };
        debug_assert!(len >= HEADER_LEN);
        if self.buf.len() < len {
            return Ok(None);
        }
        let rest = self.buf.split_off(len);
        Ok(Some(std::mem::replace(&mut self.buf, rest)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{Body, Pdu, MAX_PDU_LEN};

    #[test]
    fn pops_pdus_split_anywhere() {
        let mut stream = Pdu::request(1, Body::EnquireLink).encode().unwrap();
        stream.extend(Pdu::request(2, Body::Unbind).encode().unwrap());
        stream.extend(Pdu::response(3, Default::default(), Body::EnquireLinkResp).encode().unwrap());
        for chunk in [1, 3, 16, 17, 100] {
            let mut framer = Framer::new();
            let mut got = Vec::new();
            for c in stream.chunks(chunk) {
                framer.push(c);
                while let Some(pdu) = framer.pop().unwrap() {
                    got.push(Pdu::parse(&pdu).unwrap().sequence_number);
                }
            }
            assert_eq!(got, [1, 2, 3], "chunk {chunk}");
            assert_eq!(framer.buffered(), 0);
        }
    }

    #[test]
    fn absurd_lengths_fail_without_allocating() {
        for len in [0u32, 15, MAX_PDU_LEN as u32 + 1, u32::MAX] {
            let mut framer = Framer::new();
            let mut bytes = len.to_be_bytes().to_vec();
            bytes.extend([0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 9]);
            framer.push(&bytes);
            let err = framer.pop().unwrap_err();
            assert_eq!(err.header.sequence_number, 9);
            assert_eq!(err.error, PduError::BadCommandLength(len));
            assert_eq!(framer.buffered(), 0);
            // Poisoned.
            framer.push(&Pdu::request(1, Body::EnquireLink).encode().unwrap());
            assert!(framer.pop().is_err());
            assert_eq!(framer.buffered(), 0);
        }
    }

    #[test]
    fn largest_pdu_is_accepted() {
        let mut framer = Framer::new();
        let mut bytes = (MAX_PDU_LEN as u32).to_be_bytes().to_vec();
        bytes.resize(MAX_PDU_LEN - 1, 0);
        framer.push(&bytes);
        assert_eq!(framer.pop(), Ok(None));
        framer.push(&[0]);
        assert_eq!(framer.pop().unwrap().unwrap().len(), MAX_PDU_LEN);
    }
}
