//! The runtime: tokio drivers that wire Dialtone's sans-IO cores to sockets, timers, HTTP and the
//! store.
//!
//! - `sip_task`: one task owns the SIP transaction endpoint and the transports, and routes events
//!   to calls (the UA core).
//! - `call`: one task per call owns its `engine::Call`, its media stream and its SIP leg.
//! - `outbound`: API-originated calls: trunks, the UAC leg until answer, then `call`'s loop.
//! - `calls_registry`: live calls by CallSid, so API updates reach them.
//! - `records`: call-record writes through one task, in order, off the set-up path.
//! - `recovery`: the liveness mark, and closing what a crashed run left open at the next start.
//! - `media`: media workers own the RTP sockets and tick every stream each 20 ms.
//! - `webhook`, `tts`, `audio`: the customer's app over HTTP, speech synthesis, audio files.
//! - `http`: the REST API (from `api`) plus `/metrics`.
//! - `sms`: SMPP connections to SMS centres: binds kept up, messages submitted, deliveries and
//!   receipts handed over for storing.
//! - `messaging`: the SMS outbox (stored messages to the SMSCs, in order per destination),
//!   receipts to statuses and callbacks, incoming messages stored, acknowledged, then the
//!   number's SMS URL and its MessagingResponse.
//! - `proxy`: Proxy number masking: the index of pool numbers and open sessions, the plan of a
//!   call or message to a pool number (the other participant, the intercept and out-of-session
//!   callbacks), and the task that closes expired sessions.
//!
//! Architecture invariant: `node` is the only crate that owns sockets, timers and subprocesses;
//! it makes no protocol decisions of its own beyond routing.

pub mod audio;
pub mod call;
pub mod calls_registry;
pub mod conference;
pub mod fraud;
pub mod http;
mod live_api;
pub mod media;
pub mod messaging;
pub mod originate;
pub mod outbound;
pub mod overload;
pub mod pricing;
pub mod proxy;
mod queues;
pub mod quiet_hours;
pub mod records;
pub mod recovery;
pub mod registrar;
pub mod routing;
pub mod signals;
pub mod sip_task;
pub mod sms;
pub mod tls;
pub mod transport;
pub mod trunk;
pub mod tts;
pub mod web;
pub mod webhook;
mod wiring;
pub use wiring::*;
