//! Dialtone's domain model: identifiers (SIDs), accounts and their subaccounts, API keys,
//! applications, numbers, calls, recordings, SIP domains and credentials, queues and
//! conferences (and the live members and participants the runtime reports of them), and SMS
//! messages.
//!
//! Architecture invariant: no runtime, socket, database or HTTP crate here. Types in this crate are
//! plain data shared by `engine`, `store`, `api` and `node`; the REST JSON shape lives in `api` only.

pub mod call;
pub mod conference;
pub mod message;
pub mod records;
pub mod sid;

pub use call::{CallDirection, CallStatus};
pub use conference::{ConferenceStatus, ParticipantStatus};
pub use message::{MessageDirection, MessageStatus};
pub use records::{
    AccountRecord, AccountStatus, ApiKeyRecord, ApplicationRecord, CallRecord, CallingWindowRecord, ConferenceRecord,
    MemberRecord, MessageRecord, NotificationRecord, NotificationSid, ParticipantRecord, PhoneNumberRecord,
    QueueRecord, RecordingRecord, TimeZoneOverrideRecord,
};
pub use sid::{
    AccountSid, ApiKeySid, ApplicationSid, CallSid, ConferenceSid, CredentialListSid, CredentialSid,
    MessageSid, PhoneNumberSid, ProxyInteractionSid, ProxyParticipantSid, ProxyServiceSid,
    ProxySessionSid, QueueSid, RecordingSid, Sid, SidError, SipDomainSid, TimeZoneOverrideSid,
};
