//! Dialtone's domain model: identifiers (SIDs), accounts and their subaccounts, API keys,
//! applications, numbers, calls, recordings, SIP domains and credentials.
//!
//! Architecture invariant: no runtime, socket, database or HTTP crate here. Types in this crate are
//! plain data shared by `engine`, `store`, `api` and `node`; the REST JSON shape lives in `api` only.

pub mod call;
pub mod records;
pub mod sid;

pub use call::{CallDirection, CallStatus};
pub use records::{
    AccountRecord, AccountStatus, ApiKeyRecord, ApplicationRecord, CallRecord, NotificationRecord,
    NotificationSid, PhoneNumberRecord, RecordingRecord,
};
pub use sid::{
    AccountSid, ApiKeySid, ApplicationSid, CallSid, CredentialListSid, CredentialSid, PhoneNumberSid,
    RecordingSid, Sid, SidError, SipDomainSid,
};
