//! The runtime: tokio drivers that wire Dialtone's sans-IO cores to sockets, timers, HTTP and the
//! store.
//!
//! - `sip_task`: one task owns the SIP transaction endpoint and the transports, and routes events
//!   to calls (the UA core).
//! - `call`: one task per call owns its `engine::Call`, its media stream and its SIP leg.
//! - `outbound`: API-originated calls: trunks, the UAC leg until answer, then `call`'s loop.
//! - `calls_registry`: live calls by CallSid, so API updates reach them.
//! - `media`: media workers own the RTP sockets and tick every stream each 20 ms.
//! - `webhook`, `tts`, `audio`: the customer's app over HTTP, speech synthesis, audio files.
//! - `http`: the REST API (from `api`) plus `/metrics`.
//!
//! Architecture invariant: `node` is the only crate that owns sockets, timers and subprocesses;
//! it makes no protocol decisions of its own beyond routing.

pub mod media;
pub mod audio;
pub mod tts;
pub mod webhook;

// The wiring, behind the `wiring` feature while the crates it wires are being written.
#[cfg(feature = "wiring")]
pub mod call;
#[cfg(feature = "wiring")]
pub mod calls_registry;
#[cfg(feature = "wiring")]
pub mod outbound;
#[cfg(feature = "wiring")]
pub mod http;
#[cfg(feature = "wiring")]
pub mod routing;
#[cfg(feature = "wiring")]
pub mod sip_task;
#[cfg(feature = "wiring")]
pub mod transport;
#[cfg(feature = "wiring")]
mod wiring;
#[cfg(feature = "wiring")]
pub use wiring::*;
