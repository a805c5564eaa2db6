//! Call status and direction, with Twilio's spelling.

use std::fmt;
use std::str::FromStr;

/// A call's status, as Twilio names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallStatus {
    /// A Dialtone extension: held until the destination's calling window opens
    /// (`date_scheduled`), then `queued` and placed; cancelable like a queued call.
    Scheduled,
    Queued,
    Ringing,
    InProgress,
    Completed,
    Busy,
    Failed,
    NoAnswer,
    Canceled,
}

impl CallStatus {
    pub const ALL: [CallStatus; 9] = [
        CallStatus::Scheduled,
        CallStatus::Queued,
        CallStatus::Ringing,
        CallStatus::InProgress,
        CallStatus::Completed,
        CallStatus::Busy,
        CallStatus::Failed,
        CallStatus::NoAnswer,
        CallStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Scheduled => "scheduled",
            CallStatus::Queued => "queued",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in-progress",
            CallStatus::Completed => "completed",
            CallStatus::Busy => "busy",
            CallStatus::Failed => "failed",
            CallStatus::NoAnswer => "no-answer",
            CallStatus::Canceled => "canceled",
        }
    }

    /// Whether the call is over: no further status can follow.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            CallStatus::Completed
                | CallStatus::Busy
                | CallStatus::Failed
                | CallStatus::NoAnswer
                | CallStatus::Canceled
        )
    }
}

impl fmt::Display for CallStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown call status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for CallStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        CallStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// Who started the call. Twilio spells these `inbound`, `outbound-api`, `outbound-dial`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallDirection {
    Inbound,
    OutboundApi,
    OutboundDial,
}

impl CallDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            CallDirection::Inbound => "inbound",
            CallDirection::OutboundApi => "outbound-api",
            CallDirection::OutboundDial => "outbound-dial",
        }
    }
}

impl fmt::Display for CallDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CallDirection {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        [CallDirection::Inbound, CallDirection::OutboundApi, CallDirection::OutboundDial]
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_with_twilio_spelling() {
        for st in CallStatus::ALL {
            assert_eq!(st.as_str().parse::<CallStatus>().unwrap(), st);
        }
        assert_eq!(CallStatus::InProgress.as_str(), "in-progress");
        assert!("in_progress".parse::<CallStatus>().is_err());
    }
}
