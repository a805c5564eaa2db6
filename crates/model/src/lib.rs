//! Dialtone's domain model: identifiers (SIDs), accounts, numbers, calls, recordings.
//!
//! Architecture invariant: no runtime, socket, database or HTTP crate here. Types in this crate are
//! plain data shared by `engine`, `store`, `api` and `node`; the REST JSON shape lives in `api` only.

pub mod call;
pub mod records;
pub mod sid;

pub use call::{CallDirection, CallStatus};
pub use records::{
    AccountRecord, CallRecord, NotificationRecord, NotificationSid, PhoneNumberRecord, RecordingRecord,
};
pub use sid::{AccountSid, CallSid, PhoneNumberSid, RecordingSid, Sid, SidError};
