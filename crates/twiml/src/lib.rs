//! TwiML, the markup a customer's app answers voice webhooks with: parsed into typed verbs.
//!
//! Owns the grammar (which verbs exist, which may nest, which attributes each takes, their
//! defaults as Twilio documents them) and clear errors when a document breaks it. Knows nothing
//! about calls, media or HTTP: [`parse`] takes the body text and returns a [`Document`]; the
//! `engine` crate interprets it. [`parse_messaging`] reads the markup an app answers an incoming
//! SMS with (`<Message>`, `<Redirect>`) into a [`MessagingDocument`].
//!
//! Architecture invariant: sans-IO, no runtime or network crate. Untrusted input never panics.
//!
//! Attribute names are case-sensitive (`finishOnKey`, not `finishonkey`), as Twilio reads them.
//! Attributes this crate does not know are ignored, as Twilio does for attributes it does not use;
//! a known attribute with a value it cannot read is an error, except where Twilio documents a
//! warning and carries on with the default (a few `<Dial>` and `<Conference>` attributes): those
//! become [`Document::warnings`].

mod messaging;
mod parse;
mod verb;

pub use messaging::{parse_messaging, Message, MessagingDocument, MessagingVerb, WARN_SCHEMA};
pub use parse::parse;
pub use verb::{
    ConferenceBeep, ConferenceRecord, Dial, DialConference, DialJoin, DialKind, DialQueue,
    DialRecord, DialTarget, Document, Enqueue, Gather, GatherInput, Method, Pause, Play, Record,
    Redirect, Reject, RejectReason, Say, SpeechTimeout, Trim, Verb, Warning,
    MAX_CONFERENCE_PARTICIPANTS, MAX_DIAL_TARGETS, MAX_QUEUE_NAME_LEN, MAX_QUEUE_SIZE,
};

/// Why a document could not be read. Every variant is Twilio error 12100 ("Document parse
/// failure"); the message carries the detail Twilio reports as 12200-style schema warnings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TwimlError {
    /// Not well-formed XML.
    #[error("malformed XML at byte {position}: {reason}")]
    Xml { position: u64, reason: String },
    /// No root element at all (empty body, only a declaration or comments).
    #[error("document has no root element")]
    Empty,
    #[error("root element must be <Response>, found <{found}>")]
    Root { found: String },
    /// An element that is not a TwiML verb, or a verb where it may not appear.
    #[error("<{name}> is not allowed in <{parent}>")]
    UnexpectedElement { name: String, parent: String },
    #[error("<{verb}> attribute {attribute}=\"{value}\" is invalid: {reason}")]
    Attribute {
        verb: String,
        attribute: String,
        value: String,
        reason: String,
    },
    /// Text content that is missing, or present where the verb takes none.
    #[error("<{verb}>: {reason}")]
    Content { verb: String, reason: String },
}

impl TwimlError {
    /// The Twilio error code this failure is reported as.
    pub fn code(&self) -> u32 {
        12100
    }
}
