//! Conference and participant statuses, with Twilio's spelling.

use std::fmt;
use std::str::FromStr;

use crate::call::UnknownStatus;

/// A conference's status. `init` until the conference starts (a participant with
/// `startConferenceOnEnter` joins), then `in-progress`, then `completed` for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConferenceStatus {
    Init,
    InProgress,
    Completed,
}

impl ConferenceStatus {
    pub const ALL: [ConferenceStatus; 3] = [
        ConferenceStatus::Init,
        ConferenceStatus::InProgress,
        ConferenceStatus::Completed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConferenceStatus::Init => "init",
            ConferenceStatus::InProgress => "in-progress",
            ConferenceStatus::Completed => "completed",
        }
    }
}

impl fmt::Display for ConferenceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConferenceStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        ConferenceStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// Where a participant's call stands in its conference. A participant added through the API
/// goes `queued`, `connecting`, `ringing`, then `connected`; one that joins by `<Dial>` is
/// `connected` at once; `complete` once it has left and `failed` if its call never connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParticipantStatus {
    Queued,
    Connecting,
    Ringing,
    Connected,
    Complete,
    Failed,
}

impl ParticipantStatus {
    pub const ALL: [ParticipantStatus; 6] = [
        ParticipantStatus::Queued,
        ParticipantStatus::Connecting,
        ParticipantStatus::Ringing,
        ParticipantStatus::Connected,
        ParticipantStatus::Complete,
        ParticipantStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ParticipantStatus::Queued => "queued",
            ParticipantStatus::Connecting => "connecting",
            ParticipantStatus::Ringing => "ringing",
            ParticipantStatus::Connected => "connected",
            ParticipantStatus::Complete => "complete",
            ParticipantStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for ParticipantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ParticipantStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        ParticipantStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_with_twilio_spelling() {
        for st in ConferenceStatus::ALL {
            assert_eq!(st.as_str().parse::<ConferenceStatus>().unwrap(), st);
        }
        for st in ParticipantStatus::ALL {
            assert_eq!(st.as_str().parse::<ParticipantStatus>().unwrap(), st);
        }
        assert_eq!(ConferenceStatus::InProgress.to_string(), "in-progress");
        assert!("in_progress".parse::<ConferenceStatus>().is_err());
        // A call is `completed`; a participant is `complete`, as Twilio spells them.
        assert!("completed".parse::<ParticipantStatus>().is_err());
    }
}
