//! command_status values (SMPP 3.4 §5.1.3) and the one mapping from an SMSC's verdict (a
//! response status, or a receipt's `stat`/`err`) onto Twilio's message error codes.

use std::fmt;

use crate::receipt::MessageState;

/// The command_status of a PDU header. A newtype rather than an enum: SMSCs send vendor
/// values (0x400-0x4FF) and those must survive a round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CommandStatus(pub u32);

macro_rules! statuses {
    ($($name:ident = $value:literal, $doc:literal;)*) => {
        impl CommandStatus {
            $(#[doc = $doc] pub const $name: CommandStatus = CommandStatus($value);)*

            /// The spec's name (`ESME_RTHROTTLED`), or `None` for a value SMPP 3.4 does not name.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

statuses! {
    ESME_ROK = 0x0000_0000, "No error.";
    ESME_RINVMSGLEN = 0x0000_0001, "Message length is invalid.";
    ESME_RINVCMDLEN = 0x0000_0002, "Command length is invalid.";
    ESME_RINVCMDID = 0x0000_0003, "Invalid command ID.";
    ESME_RINVBNDSTS = 0x0000_0004, "Incorrect bind status for the given command.";
    ESME_RALYBND = 0x0000_0005, "ESME already in bound state.";
    ESME_RINVPRTFLG = 0x0000_0006, "Invalid priority flag.";
    ESME_RINVREGDLVFLG = 0x0000_0007, "Invalid registered delivery flag.";
    ESME_RSYSERR = 0x0000_0008, "System error.";
    ESME_RINVSRCADR = 0x0000_000A, "Invalid source address.";
    ESME_RINVDSTADR = 0x0000_000B, "Invalid destination address.";
    ESME_RINVMSGID = 0x0000_000C, "Message ID is invalid.";
    ESME_RBINDFAIL = 0x0000_000D, "Bind failed.";
    ESME_RINVPASWD = 0x0000_000E, "Invalid password.";
    ESME_RINVSYSID = 0x0000_000F, "Invalid system ID.";
    ESME_RCANCELFAIL = 0x0000_0011, "cancel_sm failed.";
    ESME_RREPLACEFAIL = 0x0000_0013, "replace_sm failed.";
    ESME_RMSGQFUL = 0x0000_0014, "Message queue full.";
    ESME_RINVSERTYP = 0x0000_0015, "Invalid service type.";
    ESME_RINVNUMDESTS = 0x0000_0033, "Invalid number of destinations.";
    ESME_RINVDLNAME = 0x0000_0034, "Invalid distribution list name.";
    ESME_RINVDESTFLAG = 0x0000_0040, "Invalid destination flag (submit_multi).";
    ESME_RINVSUBREP = 0x0000_0042, "Invalid submit with replace request.";
    ESME_RINVESMCLASS = 0x0000_0043, "Invalid esm_class field data.";
    ESME_RCNTSUBDL = 0x0000_0044, "Cannot submit to distribution list.";
    ESME_RSUBMITFAIL = 0x0000_0045, "submit_sm or submit_multi failed.";
    ESME_RINVSRCTON = 0x0000_0048, "Invalid source address TON.";
    ESME_RINVSRCNPI = 0x0000_0049, "Invalid source address NPI.";
    ESME_RINVDSTTON = 0x0000_0050, "Invalid destination address TON.";
    ESME_RINVDSTNPI = 0x0000_0051, "Invalid destination address NPI.";
    ESME_RINVSYSTYP = 0x0000_0053, "Invalid system_type field.";
    ESME_RINVREPFLAG = 0x0000_0054, "Invalid replace_if_present flag.";
    ESME_RINVNUMMSGS = 0x0000_0055, "Invalid number of messages.";
    ESME_RTHROTTLED = 0x0000_0058, "Throttling error (ESME has exceeded allowed message limits).";
    ESME_RINVSCHED = 0x0000_0061, "Invalid scheduled delivery time.";
    ESME_RINVEXPIRY = 0x0000_0062, "Invalid message validity period (expiry time).";
    ESME_RINVDFTMSGID = 0x0000_0063, "Predefined message invalid or not found.";
    ESME_RX_T_APPN = 0x0000_0064, "ESME receiver temporary app error code.";
    ESME_RX_P_APPN = 0x0000_0065, "ESME receiver permanent app error code.";
    ESME_RX_R_APPN = 0x0000_0066, "ESME receiver reject message error code.";
    ESME_RQUERYFAIL = 0x0000_0067, "query_sm request failed.";
    ESME_RINVOPTPARSTREAM = 0x0000_00C0, "Error in the optional part of the PDU body.";
    ESME_ROPTPARNOTALLWD = 0x0000_00C1, "Optional parameter not allowed.";
    ESME_RINVPARLEN = 0x0000_00C2, "Invalid parameter length.";
    ESME_RMISSINGOPTPARAM = 0x0000_00C3, "Expected optional parameter missing.";
    ESME_RINVOPTPARAMVAL = 0x0000_00C4, "Invalid optional parameter value.";
    ESME_RDELIVERYFAILURE = 0x0000_00FE, "Delivery failure (data_sm_resp).";
    ESME_RUNKNOWNERR = 0x0000_00FF, "Unknown error.";
}

impl CommandStatus {
    pub fn is_ok(self) -> bool {
        self == CommandStatus::ESME_ROK
    }

    /// The Twilio error code a message refused with this status gets, `None` for `ESME_ROK`.
    /// See the table in the crate documentation.
    pub fn twilio_error(self) -> Option<TwilioError> {
        use TwilioError::*;
        Some(match self {
            CommandStatus::ESME_ROK => return None,
            CommandStatus::ESME_RINVDSTADR
            | CommandStatus::ESME_RINVDSTTON
            | CommandStatus::ESME_RINVDSTNPI => InvalidTo,
            CommandStatus::ESME_RMSGQFUL | CommandStatus::ESME_RTHROTTLED => QueueOverflow,
            CommandStatus::ESME_RBINDFAIL
            | CommandStatus::ESME_RINVPASWD
            | CommandStatus::ESME_RINVSYSID
            | CommandStatus::ESME_RINVSYSTYP => AccountSuspended,
            CommandStatus::ESME_RX_R_APPN => Blocked,
            CommandStatus::ESME_RX_P_APPN => Filtered,
            CommandStatus::ESME_RDELIVERYFAILURE => Unreachable,
            _ => UnknownError,
        })
    }
}

impl fmt::Display for CommandStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({:#x})", self.0),
            None => write!(f, "command_status {:#x}", self.0),
        }
    }
}

/// The Twilio message error codes an SMSC's refusal or a failed delivery becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TwilioError {
    /// 30001: queue overflow.
    QueueOverflow,
    /// 30002: account suspended.
    AccountSuspended,
    /// 30003: unreachable destination handset.
    Unreachable,
    /// 30004: message blocked.
    Blocked,
    /// 30005: unknown destination handset.
    UnknownDestination,
    /// 30006: landline or unreachable carrier.
    Landline,
    /// 30007: message filtered (carrier violation).
    Filtered,
    /// 30008: unknown error.
    UnknownError,
    /// 21211: invalid 'To' phone number.
    InvalidTo,
}

impl TwilioError {
    pub fn code(self) -> u16 {
        match self {
            TwilioError::QueueOverflow => 30001,
            TwilioError::AccountSuspended => 30002,
            TwilioError::Unreachable => 30003,
            TwilioError::Blocked => 30004,
            TwilioError::UnknownDestination => 30005,
            TwilioError::Landline => 30006,
            TwilioError::Filtered => 30007,
            TwilioError::UnknownError => 30008,
            TwilioError::InvalidTo => 21211,
        }
    }

    /// The Twilio error for a delivery receipt, `None` when the message was delivered or is
    /// still on its way. `err` is the receipt's `err:` field, read as the GSM MAP error
    /// (3GPP TS 29.002) that most SMSCs put there; unknown values fall back on the state.
    pub fn from_receipt(state: MessageState, err: Option<u16>) -> Option<TwilioError> {
        use TwilioError::*;
        match state {
            MessageState::Delivered
            | MessageState::Accepted
            | MessageState::Enroute
            | MessageState::Scheduled => return None,
            _ => {}
        }
        let by_err = match err {
            // UnknownSubscriber, UnidentifiedSubscriber.
            Some(1) | Some(5) => Some(UnknownDestination),
            // IllegalSubscriber, CallBarred, IllegalEquipment.
            Some(9) | Some(12) | Some(13) => Some(Blocked),
            // TeleserviceNotProvisioned: the number cannot take SMS (a landline).
            Some(11) => Some(Landline),
            // AbsentSubscriberSM, AbsentSubscriber, SubscriberBusyForMT-SMS, SM-DeliveryFailure.
            Some(6) | Some(27) | Some(31) | Some(32) => Some(Unreachable),
            _ => None,
        };
        by_err.or(Some(match state {
            MessageState::Expired => Unreachable,
            MessageState::Rejected => Filtered,
            _ => UnknownError,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_display() {
        assert_eq!(CommandStatus(0x58).name(), Some("ESME_RTHROTTLED"));
        assert_eq!(CommandStatus(0x400).name(), None);
        assert_eq!(CommandStatus::ESME_RINVCMDID.to_string(), "ESME_RINVCMDID (0x3)");
        assert_eq!(CommandStatus(0x401).to_string(), "command_status 0x401");
    }

    #[test]
    fn twilio_codes() {
        assert_eq!(CommandStatus::ESME_ROK.twilio_error(), None);
        assert_eq!(CommandStatus::ESME_RINVDSTADR.twilio_error().map(TwilioError::code), Some(21211));
        assert_eq!(CommandStatus::ESME_RMSGQFUL.twilio_error().map(TwilioError::code), Some(30001));
        assert_eq!(CommandStatus::ESME_RINVPASWD.twilio_error().map(TwilioError::code), Some(30002));
        assert_eq!(CommandStatus::ESME_RX_R_APPN.twilio_error().map(TwilioError::code), Some(30004));
        assert_eq!(CommandStatus::ESME_RX_P_APPN.twilio_error().map(TwilioError::code), Some(30007));
        assert_eq!(CommandStatus(0x4ff).twilio_error().map(TwilioError::code), Some(30008));
        let code = |s, e| TwilioError::from_receipt(s, e).map(TwilioError::code);
        assert_eq!(code(MessageState::Delivered, Some(0)), None);
        assert_eq!(code(MessageState::Undeliverable, Some(1)), Some(30005));
        assert_eq!(code(MessageState::Undeliverable, Some(11)), Some(30006));
        assert_eq!(code(MessageState::Undeliverable, Some(27)), Some(30003));
        assert_eq!(code(MessageState::Undeliverable, Some(13)), Some(30004));
        assert_eq!(code(MessageState::Undeliverable, None), Some(30008));
        assert_eq!(code(MessageState::Expired, Some(0)), Some(30003));
        assert_eq!(code(MessageState::Rejected, None), Some(30007));
    }
}
