//! Message (SMS) status and direction, with Twilio's spelling, and the rule for which status may
//! follow which.

use std::fmt;
use std::str::FromStr;

use crate::call::UnknownStatus;

/// A message's status, as Twilio names it.
///
/// An outbound message goes `queued` -> `sending` (handed to an SMSC) -> `sent` (the SMSC took
/// it) -> `delivered` or `undelivered` (its delivery receipt), or `failed` when it never left;
/// `canceled` before it was picked up. An inbound one is `received`. `accepted`, `scheduled`,
/// `read`, `partially_delivered` and `receiving` are Twilio's too and are parsed and rendered,
/// though the SMS path does not produce them today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageStatus {
    Queued,
    Sending,
    Sent,
    Failed,
    Delivered,
    Undelivered,
    Receiving,
    Received,
    Accepted,
    Scheduled,
    Read,
    PartiallyDelivered,
    Canceled,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 13] = [
        MessageStatus::Queued,
        MessageStatus::Sending,
        MessageStatus::Sent,
        MessageStatus::Failed,
        MessageStatus::Delivered,
        MessageStatus::Undelivered,
        MessageStatus::Receiving,
        MessageStatus::Received,
        MessageStatus::Accepted,
        MessageStatus::Scheduled,
        MessageStatus::Read,
        MessageStatus::PartiallyDelivered,
        MessageStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "queued",
            MessageStatus::Sending => "sending",
            MessageStatus::Sent => "sent",
            MessageStatus::Failed => "failed",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Undelivered => "undelivered",
            MessageStatus::Receiving => "receiving",
            MessageStatus::Received => "received",
            MessageStatus::Accepted => "accepted",
            MessageStatus::Scheduled => "scheduled",
            MessageStatus::Read => "read",
            MessageStatus::PartiallyDelivered => "partially_delivered",
            MessageStatus::Canceled => "canceled",
        }
    }

    /// Whether nothing may follow: the message was delivered, refused, received or canceled.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            MessageStatus::Delivered
                | MessageStatus::Undelivered
                | MessageStatus::Failed
                | MessageStatus::Received
                | MessageStatus::Canceled
        )
    }

    /// Whether the message has not left yet: still waiting for an SMSC or being handed to one.
    /// Such a message is neither redacted nor deleted (Twilio's "being sent").
    pub fn is_in_flight(self) -> bool {
        matches!(
            self,
            MessageStatus::Queued
                | MessageStatus::Sending
                | MessageStatus::Accepted
                | MessageStatus::Scheduled
                | MessageStatus::Receiving
        )
    }

    /// How far along the way a status is; a status never moves back to a lower step.
    fn step(self) -> u8 {
        match self {
            MessageStatus::Accepted | MessageStatus::Scheduled | MessageStatus::Queued => 0,
            MessageStatus::Sending | MessageStatus::Receiving => 1,
            MessageStatus::Sent => 2,
            MessageStatus::PartiallyDelivered => 3,
            MessageStatus::Delivered
            | MessageStatus::Undelivered
            | MessageStatus::Failed
            | MessageStatus::Received
            | MessageStatus::Canceled
            | MessageStatus::Read => 4,
        }
    }

    /// Whether a message now `self` may be set to `next`. A final status is never overwritten
    /// (a late `sent` after its receipt's `delivered`, a retry after a cancel), and no status
    /// moves back (`sent` never returns to `sending`). Setting the same status again is allowed.
    pub fn may_become(self, next: MessageStatus) -> bool {
        !self.is_final() && next.step() >= self.step()
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        MessageStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// Who started the message: Twilio's `inbound`, `outbound-api` (the REST API),
/// `outbound-call` (TwiML `<Sms>` during a call) and `outbound-reply` (TwiML `<Message>` in
/// answer to an inbound message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageDirection {
    Inbound,
    OutboundApi,
    OutboundCall,
    OutboundReply,
}

impl MessageDirection {
    pub const ALL: [MessageDirection; 4] = [
        MessageDirection::Inbound,
        MessageDirection::OutboundApi,
        MessageDirection::OutboundCall,
        MessageDirection::OutboundReply,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageDirection::Inbound => "inbound",
            MessageDirection::OutboundApi => "outbound-api",
            MessageDirection::OutboundCall => "outbound-call",
            MessageDirection::OutboundReply => "outbound-reply",
        }
    }
}

impl fmt::Display for MessageDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageDirection {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        MessageDirection::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_directions_round_trip_with_twilio_spelling() {
        for st in MessageStatus::ALL {
            assert_eq!(st.as_str().parse::<MessageStatus>().unwrap(), st);
        }
        for d in MessageDirection::ALL {
            assert_eq!(d.as_str().parse::<MessageDirection>().unwrap(), d);
        }
        assert_eq!(MessageStatus::PartiallyDelivered.as_str(), "partially_delivered");
        assert!("Delivered".parse::<MessageStatus>().is_err());
        assert!("outbound-dial".parse::<MessageDirection>().is_err());
    }

    #[test]
    fn final_statuses_stay_and_none_moves_back() {
        use MessageStatus::*;
        assert!(Queued.may_become(Sending));
        assert!(Queued.may_become(Canceled));
        assert!(Sending.may_become(Sent));
        assert!(Sending.may_become(Failed));
        assert!(Sent.may_become(Delivered));
        assert!(Sent.may_become(Undelivered));
        assert!(Sent.may_become(Sent), "a repeat is harmless");
        assert!(!Sent.may_become(Sending));
        assert!(!Sending.may_become(Queued));
        for done in MessageStatus::ALL.into_iter().filter(|s| s.is_final()) {
            for next in MessageStatus::ALL {
                assert!(!done.may_become(next), "{done} -> {next}");
            }
        }
        assert!(Queued.is_in_flight() && Sending.is_in_flight());
        assert!(!Sent.is_in_flight() && !Delivered.is_in_flight());
    }
}
