//! RTP and RTCP for Dialtone's media plane (RFC 3550, RFC 4733), without I/O.
//!
//! This crate owns the wire formats and per-stream state: parsing and writing RTP packets
//! ([`parse_rtp`], [`write_rtp`]), the sending side of a stream ([`RtpSender`]: sequence numbers,
//! timestamps, SR counters), reception statistics ([`ReceiverStats`]: sequence validation, loss,
//! jitter), RTCP compound packets ([`rtcp`]) and telephone-events ([`dtmf`]).
//!
//! It is driven by the media worker in `node`, which owns the sockets and the 20 ms tick: it hands
//! received datagrams and the current `Instant` in, and sends the bytes it gets back. Nothing here
//! reads a clock, a socket or a random source; SSRCs and initial sequence numbers come from the
//! caller's RNG, NTP time for sender reports from the caller's clock. Malformed input is an
//! [`RtpError`], never a panic.

pub mod dtmf;
mod packet;
pub mod rtcp;
mod sender;
mod stats;

pub use packet::{
    is_rtcp, parse_rtp, write_rtp, Csrcs, HeaderExtension, RtpHeader, RtpPacket, FIXED_HEADER_LEN,
};
pub use sender::RtpSender;
pub use stats::ReceiverStats;

/// Everything that can be wrong with a received RTP or RTCP datagram. The media worker drops the
/// datagram and counts it; none of these is the local side's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtpError {
    #[error("datagram too short ({0} bytes)")]
    TooShort(usize),
    #[error("unsupported RTP version {0}")]
    BadVersion(u8),
    #[error("CSRC list runs past the end of the packet")]
    TruncatedCsrc,
    #[error("header extension runs past the end of the packet")]
    TruncatedExtension,
    #[error("padding count {padding} does not fit the {available} octets after the header")]
    BadPadding { padding: u8, available: usize },
    #[error("RTCP length field runs past the end of the datagram")]
    TruncatedRtcp,
    #[error("malformed RTCP {0}")]
    MalformedRtcp(&'static str),
    #[error("telephone-event payload is {0} bytes, needs 4")]
    ShortTelephoneEvent(usize),
}
