//! SIP for Dialtone, sans-IO: message parsing and serialization (RFC 3261 §7, §18.3),
//! typed header views, TCP stream framing, the transaction layer (§17, RFC 6026), dialogs
//! (§12), SDP offer/answer for audio calls (RFC 4566, RFC 3264), digest authentication
//! (§22, RFC 7616) and registrar bindings (§10.3).
//!
//! Nothing here touches a socket, a clock or the environment. The driver (the `node` crate)
//! feeds datagrams or framed TCP messages into [`transaction::Endpoint::handle_input`] with
//! the current `Instant`, sends what [`transaction::Endpoint::poll_output`] returns, and
//! calls [`transaction::Endpoint::handle_timeout`] when
//! [`transaction::Endpoint::poll_timeout`] is due. Randomness (branches) comes from a seed
//! given at construction, so tests run on simulated time and are repeatable.

mod framer;
mod header;
mod message;

pub mod auth;
pub mod dialog;
pub mod registrar;
pub mod sdp;
pub mod transaction;

pub use framer::StreamFramer;
pub use header::{NameAddr, Param, Via};
pub use message::{
    parse_message, parse_message_unchecked, Headers, Message, Method, ParseError, Request, Response,
    Transport, MAX_BODY_BYTES, MAX_HEADER_BYTES,
};
