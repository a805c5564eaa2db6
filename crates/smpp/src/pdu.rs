//! SMPP 3.4 PDUs (§4): the 16-octet header, the bodies an ESME needs, and TLVs (§5.3).
//!
//! [`Pdu::parse`] reads exactly one PDU (as cut by [`crate::Framer`]); [`Pdu::encode`]
//! writes one. Both check the same field limits, so whatever parses re-encodes to bytes that
//! parse to an equal value. C-Octet Strings are read as Latin-1 (every octet is a char, so
//! nothing is lost; the spec says ASCII) and written back the same way.

use crate::status::CommandStatus;

/// Octets in a PDU header.
pub const HEADER_LEN: usize = 16;
/// The largest command_length accepted. SMPP sets no limit; a submit_sm with a full
/// message_payload stays well below this, and a larger value is a broken or hostile peer.
pub const MAX_PDU_LEN: usize = 64 * 1024;

/// interface_version of SMPP 3.4 (0x34) and 5.0 (0x50).
pub const SMPP_V34: u8 = 0x34;
pub const SMPP_V50: u8 = 0x50;

/// command_id values (§5.1.2). A response is its request's id with bit 31 set.
pub mod command_id {
    pub const GENERIC_NACK: u32 = 0x8000_0000;
    pub const BIND_RECEIVER: u32 = 0x0000_0001;
    pub const BIND_RECEIVER_RESP: u32 = 0x8000_0001;
    pub const BIND_TRANSMITTER: u32 = 0x0000_0002;
    pub const BIND_TRANSMITTER_RESP: u32 = 0x8000_0002;
    pub const QUERY_SM: u32 = 0x0000_0003;
    pub const QUERY_SM_RESP: u32 = 0x8000_0003;
    pub const SUBMIT_SM: u32 = 0x0000_0004;
    pub const SUBMIT_SM_RESP: u32 = 0x8000_0004;
    pub const DELIVER_SM: u32 = 0x0000_0005;
    pub const DELIVER_SM_RESP: u32 = 0x8000_0005;
    pub const UNBIND: u32 = 0x0000_0006;
    pub const UNBIND_RESP: u32 = 0x8000_0006;
    pub const BIND_TRANSCEIVER: u32 = 0x0000_0009;
    pub const BIND_TRANSCEIVER_RESP: u32 = 0x8000_0009;
    pub const OUTBIND: u32 = 0x0000_000B;
    pub const ENQUIRE_LINK: u32 = 0x0000_0015;
    pub const ENQUIRE_LINK_RESP: u32 = 0x8000_0015;
    pub const ALERT_NOTIFICATION: u32 = 0x0000_0102;
    /// Bit 31: the PDU is a response.
    pub const RESPONSE_BIT: u32 = 0x8000_0000;
}

/// TLV tags this crate understands (§5.3.2). Others are kept as they came.
pub mod tag {
    pub const SC_INTERFACE_VERSION: u16 = 0x0210;
    pub const SAR_MSG_REF_NUM: u16 = 0x020C;
    pub const SAR_TOTAL_SEGMENTS: u16 = 0x020E;
    pub const SAR_SEGMENT_SEQNUM: u16 = 0x020F;
    pub const MESSAGE_PAYLOAD: u16 = 0x0424;
    pub const RECEIPTED_MESSAGE_ID: u16 = 0x001E;
    pub const MESSAGE_STATE: u16 = 0x0427;
    pub const NETWORK_ERROR_CODE: u16 = 0x0423;
}

/// Which part of a PDU was wrong: decides the command_status a refusal carries.
/// The longest system_id taken in a bind response (the spec says 16 octets with the NUL; an
/// SMSC that says more is still understood).
pub const BIND_RESP_SYSTEM_ID_MAX: usize = 65;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    Header,
    SystemId,
    Password,
    SystemType,
    AddressRange,
    ServiceType,
    SourceAddr,
    DestinationAddr,
    EsmeAddr,
    ScheduleDeliveryTime,
    ValidityPeriod,
    ShortMessage,
    MessageId,
    FinalDate,
    Octet,
    Tlv,
}

impl Field {
    fn status(self) -> CommandStatus {
        match self {
            Field::SystemId => CommandStatus::ESME_RINVSYSID,
            Field::Password => CommandStatus::ESME_RINVPASWD,
            Field::SystemType => CommandStatus::ESME_RINVSYSTYP,
            Field::ServiceType => CommandStatus::ESME_RINVSERTYP,
            Field::SourceAddr | Field::EsmeAddr => CommandStatus::ESME_RINVSRCADR,
            Field::DestinationAddr => CommandStatus::ESME_RINVDSTADR,
            Field::ScheduleDeliveryTime => CommandStatus::ESME_RINVSCHED,
            Field::ValidityPeriod => CommandStatus::ESME_RINVEXPIRY,
            Field::ShortMessage => CommandStatus::ESME_RINVMSGLEN,
            Field::MessageId => CommandStatus::ESME_RINVMSGID,
            Field::Tlv => CommandStatus::ESME_RINVOPTPARSTREAM,
            Field::Header | Field::AddressRange | Field::FinalDate | Field::Octet => CommandStatus::ESME_RINVCMDLEN,
        }
    }
}

/// Why bytes are not a PDU, or a PDU cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PduError {
    #[error("command_length {0} is outside 16..=65536")]
    BadCommandLength(u32),
    #[error("command_length {declared} but {actual} octets given")]
    LengthMismatch { declared: u32, actual: usize },
    #[error("unknown command_id {0:#010x}")]
    UnknownCommand(u32),
    #[error("{0:?}: the PDU ends inside it")]
    Truncated(Field),
    #[error("{field:?}: longer than {max} octets")]
    TooLong { field: Field, max: usize },
    #[error("{0:?}: a character is not Latin-1 or is NUL")]
    BadChar(Field),
    #[error("TLV {tag:#06x}: length {len} runs past the PDU")]
    BadTlv { tag: u16, len: u16 },
    #[error("{0} octets after the body")]
    TrailingBytes(usize),
}

impl PduError {
    /// The command_status to refuse the PDU with (in its response, or a generic_nack).
    pub fn command_status(&self) -> CommandStatus {
        match self {
            PduError::BadCommandLength(_) | PduError::LengthMismatch { .. } | PduError::TrailingBytes(_) => {
                CommandStatus::ESME_RINVCMDLEN
            }
            PduError::UnknownCommand(_) => CommandStatus::ESME_RINVCMDID,
            PduError::Truncated(f) | PduError::BadChar(f) | PduError::TooLong { field: f, .. } => f.status(),
            PduError::BadTlv { .. } => CommandStatus::ESME_RINVOPTPARSTREAM,
        }
    }
}

/// The 16-octet header (§3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub command_length: u32,
    pub command_id: u32,
    pub command_status: CommandStatus,
    pub sequence_number: u32,
}

impl Header {
    /// Reads a header from the first 16 octets; `None` if fewer are given. Checks nothing:
    /// see [`Header::check_length`].
    pub fn parse(bytes: &[u8]) -> Option<Header> {
        let word = |i: usize| -> Option<u32> {
            let b = bytes.get(i..i + 4)?;
            Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        Some(Header {
            command_length: word(0)?,
            command_id: word(4)?,
            command_status: CommandStatus(word(8)?),
            sequence_number: word(12)?,
        })
    }

    /// The command_length as a buffer size, if it is one a peer may send.
    pub fn check_length(&self) -> Result<usize, PduError> {
        let len = self.command_length as usize;
        if (HEADER_LEN..=MAX_PDU_LEN).contains(&len) {
            Ok(len)
        } else {
            Err(PduError::BadCommandLength(self.command_length))
        }
    }

    pub fn is_response(&self) -> bool {
        self.command_id & command_id::RESPONSE_BIT != 0
    }
}

/// One TLV (optional parameter, §3.2.4). The value is kept raw; typed readers live on
/// [`Tlvs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlv {
    pub tag: u16,
    pub value: Vec<u8>,
}

/// The TLVs of a body, in the order they came (unknown tags included).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tlvs(pub Vec<Tlv>);

impl Tlvs {
    pub fn get(&self, tag: u16) -> Option<&[u8]> {
        self.0.iter().find(|t| t.tag == tag).map(|t| t.value.as_slice())
    }

    /// Replaces the value of `tag`, or appends it.
    pub fn set(&mut self, tag: u16, value: Vec<u8>) {
        match self.0.iter_mut().find(|t| t.tag == tag) {
            Some(t) => t.value = value,
            None => self.0.push(Tlv { tag, value }),
        }
    }

    pub fn u8(&self, tag: u16) -> Option<u8> {
        match self.get(tag)? {
            [b] => Some(*b),
            _ => None,
        }
    }

    pub fn u16(&self, tag: u16) -> Option<u16> {
        match self.get(tag)? {
            [a, b] => Some(u16::from_be_bytes([*a, *b])),
            _ => None,
        }
    }

    /// A C-Octet String value (the NUL is optional: some SMSCs leave it out).
    pub fn c_string(&self, tag: u16) -> Option<String> {
        let v = self.get(tag)?;
        let v = v.strip_suffix(&[0]).unwrap_or(v);
        Some(latin1(v))
    }

    pub fn sar_msg_ref_num(&self) -> Option<u16> {
        self.u16(tag::SAR_MSG_REF_NUM)
    }
    pub fn sar_total_segments(&self) -> Option<u8> {
        self.u8(tag::SAR_TOTAL_SEGMENTS)
    }
    pub fn sar_segment_seqnum(&self) -> Option<u8> {
        self.u8(tag::SAR_SEGMENT_SEQNUM)
    }
    pub fn message_payload(&self) -> Option<&[u8]> {
        self.get(tag::MESSAGE_PAYLOAD)
    }
    pub fn receipted_message_id(&self) -> Option<String> {
        self.c_string(tag::RECEIPTED_MESSAGE_ID)
    }
    pub fn message_state(&self) -> Option<u8> {
        self.u8(tag::MESSAGE_STATE)
    }
    pub fn sc_interface_version(&self) -> Option<u8> {
        self.u8(tag::SC_INTERFACE_VERSION)
    }
}

/// The three ways to bind (§4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindMode {
    Transmitter,
    Receiver,
    Transceiver,
}

impl BindMode {
    pub fn command_id(self) -> u32 {
        match self {
            BindMode::Transmitter => command_id::BIND_TRANSMITTER,
            BindMode::Receiver => command_id::BIND_RECEIVER,
            BindMode::Transceiver => command_id::BIND_TRANSCEIVER,
        }
    }
    pub fn can_submit(self) -> bool {
        self != BindMode::Receiver
    }
    pub fn can_receive(self) -> bool {
        self != BindMode::Transmitter
    }
}

/// bind_transmitter, bind_receiver, bind_transceiver (§4.1.1, §4.1.3, §4.1.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub mode: BindMode,
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    pub interface_version: u8,
    pub addr_ton: u8,
    pub addr_npi: u8,
    pub address_range: String,
}

/// A bind response (§4.1.2): the SMSC's system_id and its sc_interface_version TLV. An
/// error response may carry no body; it parses with an empty system_id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindResp {
    pub mode: BindMode,
    pub system_id: String,
    pub tlvs: Tlvs,
}

/// An SME address: type of number, numbering plan, digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Address {
    pub ton: u8,
    pub npi: u8,
    pub addr: String,
}

impl Address {
    /// An international number (TON 1, NPI 1 E.164), given with or without `+`.
    pub fn international(number: &str) -> Address {
        Address { ton: 1, npi: 1, addr: number.trim_start_matches('+').to_string() }
    }
    /// An alphanumeric sender id (TON 5, NPI 0).
    pub fn alphanumeric(text: &str) -> Address {
        Address { ton: 5, npi: 0, addr: text.to_string() }
    }
}

/// The body shared by submit_sm (§4.4.1) and deliver_sm (§4.6.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sm {
    pub service_type: String,
    pub source: Address,
    pub destination: Address,
    pub esm_class: u8,
    pub protocol_id: u8,
    pub priority_flag: u8,
    pub schedule_delivery_time: String,
    pub validity_period: String,
    pub registered_delivery: u8,
    pub replace_if_present_flag: u8,
    pub data_coding: u8,
    pub sm_default_msg_id: u8,
    pub short_message: Vec<u8>,
    pub tlvs: Tlvs,
}

/// esm_class bits (§5.2.12).
pub mod esm_class {
    /// Bits 5-2: the message type.
    pub const TYPE_MASK: u8 = 0x3C;
    /// Message type: SMSC delivery receipt.
    pub const DELIVERY_RECEIPT: u8 = 0x04;
    /// Message type: intermediate delivery notification.
    pub const INTERMEDIATE_NOTIFICATION: u8 = 0x20;
    /// UDHI: short_message starts with a user data header.
    pub const UDHI: u8 = 0x40;
}

/// registered_delivery: ask for an SMSC delivery receipt on success or failure.
pub const REGISTERED_DELIVERY_RECEIPT: u8 = 0x01;

impl Sm {
    /// The user data: short_message, or message_payload when short_message is empty.
    pub fn payload(&self) -> &[u8] {
        if self.short_message.is_empty() {
            self.tlvs.message_payload().unwrap_or(&[])
        } else {
            &self.short_message
        }
    }

    pub fn is_receipt(&self) -> bool {
        matches!(
            self.esm_class & esm_class::TYPE_MASK,
            esm_class::DELIVERY_RECEIPT | esm_class::INTERMEDIATE_NOTIFICATION
        )
    }
}

/// submit_sm_resp and deliver_sm_resp (§4.4.2, §4.6.2). An error response may carry no
/// body; it parses with an empty message_id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SmResp {
    pub message_id: String,
    /// SMPP 5.0 allows TLVs here; 3.4 SMSCs send none.
    pub tlvs: Tlvs,
}

/// outbind (§4.1.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbind {
    pub system_id: String,
    pub password: String,
}

/// alert_notification (§4.12.1): parsed so it can be ignored cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertNotification {
    pub source: Address,
    pub esme: Address,
    pub tlvs: Tlvs,
}

/// query_sm (§4.8.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuerySm {
    pub message_id: String,
    pub source: Address,
}

/// query_sm_resp (§4.8.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuerySmResp {
    pub message_id: String,
    pub final_date: String,
    pub message_state: u8,
    pub error_code: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Bind(Bind),
    BindResp(BindResp),
    Unbind,
    UnbindResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    SubmitSm(Box<Sm>),
    SubmitSmResp(SmResp),
    DeliverSm(Box<Sm>),
    DeliverSmResp(SmResp),
    Outbind(Outbind),
    AlertNotification(AlertNotification),
    QuerySm(QuerySm),
    QuerySmResp(QuerySmResp),
}

impl Body {
    pub fn command_id(&self) -> u32 {
        use command_id::*;
        match self {
            Body::Bind(b) => b.mode.command_id(),
            Body::BindResp(b) => b.mode.command_id() | RESPONSE_BIT,
            Body::Unbind => UNBIND,
            Body::UnbindResp => UNBIND_RESP,
            Body::EnquireLink => ENQUIRE_LINK,
            Body::EnquireLinkResp => ENQUIRE_LINK_RESP,
            Body::GenericNack => GENERIC_NACK,
            Body::SubmitSm(_) => SUBMIT_SM,
            Body::SubmitSmResp(_) => SUBMIT_SM_RESP,
            Body::DeliverSm(_) => DELIVER_SM,
            Body::DeliverSmResp(_) => DELIVER_SM_RESP,
            Body::Outbind(_) => OUTBIND,
            Body::AlertNotification(_) => ALERT_NOTIFICATION,
            Body::QuerySm(_) => QUERY_SM,
            Body::QuerySmResp(_) => QUERY_SM_RESP,
        }
    }
}

/// One PDU: header fields and body. command_length is computed when encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    pub sequence_number: u32,
    pub command_status: CommandStatus,
    pub body: Body,
}

impl Pdu {
    /// A request (command_status 0).
    pub fn request(sequence_number: u32, body: Body) -> Pdu {
        Pdu { sequence_number, command_status: CommandStatus::ESME_ROK, body }
    }

    pub fn response(sequence_number: u32, command_status: CommandStatus, body: Body) -> Pdu {
        Pdu { sequence_number, command_status, body }
    }

    pub fn command_id(&self) -> u32 {
        self.body.command_id()
    }

    /// Parses one whole PDU: `bytes` must be exactly command_length long.
    pub fn parse(bytes: &[u8]) -> Result<Pdu, PduError> {
        let header = Header::parse(bytes).ok_or(PduError::Truncated(Field::Header))?;
        let len = header.check_length()?;
        if len != bytes.len() {
            return Err(PduError::LengthMismatch { declared: header.command_length, actual: bytes.len() });
        }
        let mut r = Reader { buf: &bytes[HEADER_LEN..] };
        let error_resp = header.is_response() && !header.command_status.is_ok();
        use command_id::*;
        let body = match header.command_id {
            BIND_TRANSMITTER | BIND_RECEIVER | BIND_TRANSCEIVER => Body::Bind(Bind {
                mode: mode_of(header.command_id),
                system_id: r.c_string(Field::SystemId, 16)?,
                password: r.c_string(Field::Password, 9)?,
                system_type: r.c_string(Field::SystemType, 13)?,
                interface_version: r.u8()?,
                addr_ton: r.u8()?,
                addr_npi: r.u8()?,
                address_range: r.c_string(Field::AddressRange, 41)?,
            }),
            BIND_TRANSMITTER_RESP | BIND_RECEIVER_RESP | BIND_TRANSCEIVER_RESP => {
                let mode = mode_of(header.command_id & !RESPONSE_BIT);
                if error_resp && r.buf.is_empty() {
                    Body::BindResp(BindResp { mode, system_id: String::new(), tlvs: Tlvs::default() })
                } else {
                    // SMSCs in the wild name themselves with more than the spec's 15 octets: taken
                    // up to BIND_RESP_SYSTEM_ID_MAX (nothing but a log line depends on it).
                    Body::BindResp(BindResp {
                        mode,
                        system_id: r.c_string(Field::SystemId, BIND_RESP_SYSTEM_ID_MAX)?,
                        tlvs: r.tlvs()?,
                    })
                }
            }
            UNBIND => Body::Unbind,
            UNBIND_RESP => Body::UnbindResp,
            ENQUIRE_LINK => Body::EnquireLink,
            ENQUIRE_LINK_RESP => Body::EnquireLinkResp,
            GENERIC_NACK => Body::GenericNack,
            SUBMIT_SM => Body::SubmitSm(Box::new(r.sm()?)),
            DELIVER_SM => Body::DeliverSm(Box::new(r.sm()?)),
            SUBMIT_SM_RESP | DELIVER_SM_RESP => {
                let resp = if r.buf.is_empty() && (error_resp || header.command_id == DELIVER_SM_RESP) {
                    SmResp::default()
                } else {
                    SmResp { message_id: r.c_string(Field::MessageId, 65)?, tlvs: r.tlvs()? }
                };
                if header.command_id == SUBMIT_SM_RESP {
                    Body::SubmitSmResp(resp)
                } else {
                    Body::DeliverSmResp(resp)
                }
            }
            OUTBIND => Body::Outbind(Outbind {
                system_id: r.c_string(Field::SystemId, 16)?,
                password: r.c_string(Field::Password, 9)?,
            }),
            ALERT_NOTIFICATION => Body::AlertNotification(AlertNotification {
                source: r.address(Field::SourceAddr, 65)?,
                esme: r.address(Field::EsmeAddr, 65)?,
                tlvs: r.tlvs()?,
            }),
            QUERY_SM => Body::QuerySm(QuerySm {
                message_id: r.c_string(Field::MessageId, 65)?,
                source: r.address(Field::SourceAddr, 21)?,
            }),
            QUERY_SM_RESP => Body::QuerySmResp(QuerySmResp {
                message_id: r.c_string(Field::MessageId, 65)?,
                final_date: r.c_string(Field::FinalDate, 17)?,
                message_state: r.u8()?,
                error_code: r.u8()?,
            }),
            other => return Err(PduError::UnknownCommand(other)),
        };
        if !r.buf.is_empty() {
            return Err(PduError::TrailingBytes(r.buf.len()));
        }
        Ok(Pdu { sequence_number: header.sequence_number, command_status: header.command_status, body })
    }

    /// Writes the PDU, command_length included.
    pub fn encode(&self) -> Result<Vec<u8>, PduError> {
        let mut w = Writer { buf: Vec::with_capacity(64) };
        w.buf.extend_from_slice(&[0; 4]);
        w.u32(self.command_id());
        w.u32(self.command_status.0);
        w.u32(self.sequence_number);
        match &self.body {
            Body::Bind(b) => {
                w.c_string(&b.system_id, Field::SystemId, 16)?;
                w.c_string(&b.password, Field::Password, 9)?;
                w.c_string(&b.system_type, Field::SystemType, 13)?;
                w.u8(b.interface_version);
                w.u8(b.addr_ton);
                w.u8(b.addr_npi);
                w.c_string(&b.address_range, Field::AddressRange, 41)?;
            }
            Body::BindResp(b) => {
                w.c_string(&b.system_id, Field::SystemId, BIND_RESP_SYSTEM_ID_MAX)?;
                w.tlvs(&b.tlvs)?;
            }
            Body::Unbind | Body::UnbindResp | Body::EnquireLink | Body::EnquireLinkResp | Body::GenericNack => {}
            Body::SubmitSm(sm) | Body::DeliverSm(sm) => w.sm(sm)?,
            Body::SubmitSmResp(resp) | Body::DeliverSmResp(resp) => {
                w.c_string(&resp.message_id, Field::MessageId, 65)?;
                w.tlvs(&resp.tlvs)?;
            }
            Body::Outbind(o) => {
                w.c_string(&o.system_id, Field::SystemId, 16)?;
                w.c_string(&o.password, Field::Password, 9)?;
            }
            Body::AlertNotification(a) => {
                w.address(&a.source, Field::SourceAddr, 65)?;
                w.address(&a.esme, Field::EsmeAddr, 65)?;
                w.tlvs(&a.tlvs)?;
            }
            Body::QuerySm(q) => {
                w.c_string(&q.message_id, Field::MessageId, 65)?;
                w.address(&q.source, Field::SourceAddr, 21)?;
            }
            Body::QuerySmResp(q) => {
                w.c_string(&q.message_id, Field::MessageId, 65)?;
                w.c_string(&q.final_date, Field::FinalDate, 17)?;
                w.u8(q.message_state);
                w.u8(q.error_code);
            }
        }
        let len = w.buf.len();
        if len > MAX_PDU_LEN {
            return Err(PduError::BadCommandLength(u32::try_from(len).unwrap_or(u32::MAX)));
        }
        // len <= MAX_PDU_LEN, so it fits in a u32.
        w.buf[..4].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(w.buf)
    }
}

fn mode_of(request_id: u32) -> BindMode {
    match request_id {
        command_id::BIND_RECEIVER => BindMode::Receiver,
        command_id::BIND_TRANSMITTER => BindMode::Transmitter,
        _ => BindMode::Transceiver,
    }
}

pub(crate) fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl Reader<'_> {
    fn u8(&mut self) -> Result<u8, PduError> {
        let (&b, rest) = self.buf.split_first().ok_or(PduError::Truncated(Field::Octet))?;
        self.buf = rest;
        Ok(b)
    }

    /// A C-Octet String of at most `max` octets, its NUL included.
    fn c_string(&mut self, field: Field, max: usize) -> Result<String, PduError> {
        let window = &self.buf[..self.buf.len().min(max)];
        let Some(nul) = window.iter().position(|&b| b == 0) else {
            return Err(if self.buf.len() >= max { PduError::TooLong { field, max } } else { PduError::Truncated(field) });
        };
        let s = latin1(&self.buf[..nul]);
        self.buf = &self.buf[nul + 1..];
        Ok(s)
    }

    fn address(&mut self, field: Field, max: usize) -> Result<Address, PduError> {
        Ok(Address { ton: self.u8()?, npi: self.u8()?, addr: self.c_string(field, max)? })
    }

    fn sm(&mut self) -> Result<Sm, PduError> {
        let service_type = self.c_string(Field::ServiceType, 6)?;
        let source = self.address(Field::SourceAddr, 21)?;
        let destination = self.address(Field::DestinationAddr, 21)?;
        let esm_class = self.u8()?;
        let protocol_id = self.u8()?;
        let priority_flag = self.u8()?;
        let schedule_delivery_time = self.c_string(Field::ScheduleDeliveryTime, 17)?;
        let validity_period = self.c_string(Field::ValidityPeriod, 17)?;
        let registered_delivery = self.u8()?;
        let replace_if_present_flag = self.u8()?;
        let data_coding = self.u8()?;
        let sm_default_msg_id = self.u8()?;
        let sm_length = self.u8()? as usize;
        if sm_length > self.buf.len() {
            return Err(PduError::Truncated(Field::ShortMessage));
        }
        let (short_message, rest) = self.buf.split_at(sm_length);
        self.buf = rest;
        Ok(Sm {
            service_type,
            source,
            destination,
            esm_class,
            protocol_id,
            priority_flag,
            schedule_delivery_time,
            validity_period,
            registered_delivery,
            replace_if_present_flag,
            data_coding,
            sm_default_msg_id,
            short_message: short_message.to_vec(),
            tlvs: self.tlvs()?,
        })
    }

    /// TLVs up to the end of the PDU.
    fn tlvs(&mut self) -> Result<Tlvs, PduError> {
        let mut tlvs = Vec::new();
        while !self.buf.is_empty() {
            let [t0, t1, l0, l1, rest @ ..] = self.buf else {
                return Err(PduError::Truncated(Field::Tlv));
            };
            let tag = u16::from_be_bytes([*t0, *t1]);
            let len = u16::from_be_bytes([*l0, *l1]);
            if len as usize > rest.len() {
                return Err(PduError::BadTlv { tag, len });
            }
            let (value, rest) = rest.split_at(len as usize);
            tlvs.push(Tlv { tag, value: value.to_vec() });
            self.buf = rest;
        }
        Ok(Tlvs(tlvs))
    }
}

struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn c_string(&mut self, s: &str, field: Field, max: usize) -> Result<(), PduError> {
        let start = self.buf.len();
        for c in s.chars() {
            match u8::try_from(u32::from(c)) {
                Ok(b) if b != 0 => self.buf.push(b),
                _ => return Err(PduError::BadChar(field)),
            }
        }
        self.buf.push(0);
        if self.buf.len() - start > max {
            return Err(PduError::TooLong { field, max });
        }
        Ok(())
    }

    fn address(&mut self, a: &Address, field: Field, max: usize) -> Result<(), PduError> {
        self.u8(a.ton);
        self.u8(a.npi);
        self.c_string(&a.addr, field, max)
    }

    fn sm(&mut self, sm: &Sm) -> Result<(), PduError> {
        self.c_string(&sm.service_type, Field::ServiceType, 6)?;
        self.address(&sm.source, Field::SourceAddr, 21)?;
        self.address(&sm.destination, Field::DestinationAddr, 21)?;
        self.u8(sm.esm_class);
        self.u8(sm.protocol_id);
        self.u8(sm.priority_flag);
        self.c_string(&sm.schedule_delivery_time, Field::ScheduleDeliveryTime, 17)?;
        self.c_string(&sm.validity_period, Field::ValidityPeriod, 17)?;
        self.u8(sm.registered_delivery);
        self.u8(sm.replace_if_present_flag);
        self.u8(sm.data_coding);
        self.u8(sm.sm_default_msg_id);
        let len = u8::try_from(sm.short_message.len())
            .map_err(|_| PduError::TooLong { field: Field::ShortMessage, max: 255 })?;
        self.u8(len);
        self.buf.extend_from_slice(&sm.short_message);
        self.tlvs(&sm.tlvs)
    }

    fn tlvs(&mut self, tlvs: &Tlvs) -> Result<(), PduError> {
        for t in &tlvs.0 {
            let len = u16::try_from(t.value.len())
                .map_err(|_| PduError::TooLong { field: Field::Tlv, max: u16::MAX as usize })?;
            self.buf.extend_from_slice(&t.tag.to_be_bytes());
            self.buf.extend_from_slice(&len.to_be_bytes());
            self.buf.extend_from_slice(&t.value);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hex with spaces and `"text"` runs, for fixtures that read like the spec's tables.
    fn bytes(spec: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, piece) in spec.split('"').enumerate() {
            if i % 2 == 1 {
                out.extend_from_slice(piece.as_bytes());
            } else {
                let digits: String = piece.chars().filter(|c| !c.is_whitespace()).collect();
                for pair in digits.as_bytes().chunks(2) {
                    out.push(u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap());
                }
            }
        }
        out
    }

    fn round_trip(pdu: Pdu) {
        let encoded = pdu.encode().unwrap();
        assert_eq!(Header::parse(&encoded).unwrap().command_length as usize, encoded.len());
        assert_eq!(Pdu::parse(&encoded).unwrap(), pdu, "{encoded:02x?}");
    }

    fn submit() -> Sm {
        Sm {
            source: Address::international("+447700900000"),
            destination: Address::international("447700900001"),
            registered_delivery: REGISTERED_DELIVERY_RECEIPT,
            short_message: b"Hello".to_vec(),
            ..Sm::default()
        }
    }

    #[test]
    fn bind_transceiver_fixture() {
        // §4.1.5: system_id, password, system_type, interface_version, addr_ton, addr_npi,
        // address_range.
        let wire = bytes(
            r#"0000002F 00000009 00000000 00000001
               "SMPP3TEST" 00 "secret08" 00 "SUBMIT1" 00 34 01 01 00"#,
        );
        let pdu = Pdu::request(
            1,
            Body::Bind(Bind {
                mode: BindMode::Transceiver,
                system_id: "SMPP3TEST".into(),
                password: "secret08".into(),
                system_type: "SUBMIT1".into(),
                interface_version: SMPP_V34,
                addr_ton: 1,
                addr_npi: 1,
                address_range: String::new(),
            }),
        );
        assert_eq!(pdu.encode().unwrap(), wire);
        assert_eq!(Pdu::parse(&wire).unwrap(), pdu);
        // SMPP 5.0's interface_version is just a value.
        let mut v5 = wire.clone();
        v5[43] = SMPP_V50;
        let Body::Bind(b) = Pdu::parse(&v5).unwrap().body else { panic!("bind") };
        assert_eq!(b.interface_version, 0x50);
    }

    #[test]
    fn submit_sm_fixture() {
        // §4.4.1, every mandatory field in order, no TLVs.
        let wire = bytes(
            r#"0000003E 00000004 00000000 00000002
               00 01 01 "447700900000" 00 01 01 "447700900001" 00
               00 00 00 00 00 01 00 00 00 05 "Hello""#,
        );
        let pdu = Pdu::request(2, Body::SubmitSm(Box::new(submit())));
        assert_eq!(pdu.encode().unwrap(), wire);
        assert_eq!(Pdu::parse(&wire).unwrap(), pdu);
    }

    #[test]
    fn submit_sm_resp_and_tlvs_fixture() {
        let wire = bytes(r#"0000001A 80000004 00000000 00000002 "a1b2c3d4e" 00"#);
        let pdu = Pdu::parse(&wire).unwrap();
        assert_eq!(pdu.body, Body::SubmitSmResp(SmResp { message_id: "a1b2c3d4e".into(), tlvs: Tlvs::default() }));
        // deliver_sm carrying a receipt's TLVs, plus one unknown TLV kept as it came.
        let mut sm = submit();
        sm.esm_class = esm_class::DELIVERY_RECEIPT;
        sm.tlvs.set(tag::RECEIPTED_MESSAGE_ID, b"a1b2c3d4e\0".to_vec());
        sm.tlvs.set(tag::MESSAGE_STATE, vec![2]);
        sm.tlvs.set(0x1403, vec![0xDE, 0xAD]);
        let encoded = Pdu::request(7, Body::DeliverSm(Box::new(sm.clone()))).encode().unwrap();
        assert!(encoded.ends_with(&bytes("001E 000A \"a1b2c3d4e\" 00 0427 0001 02 1403 0002 DEAD")));
        let Body::DeliverSm(back) = Pdu::parse(&encoded).unwrap().body else { panic!("deliver_sm") };
        assert_eq!(back.tlvs.receipted_message_id().as_deref(), Some("a1b2c3d4e"));
        assert_eq!(back.tlvs.message_state(), Some(2));
        assert_eq!(back.tlvs.get(0x1403), Some(&[0xDE, 0xAD][..]));
        assert_eq!(*back, sm);
    }

    #[test]
    fn every_pdu_round_trips() {
        let ok = CommandStatus::ESME_ROK;
        let mut long = submit();
        long.short_message.clear();
        long.tlvs.set(tag::MESSAGE_PAYLOAD, vec![b'x'; 1000]);
        long.tlvs.set(tag::SAR_MSG_REF_NUM, vec![0x12, 0x34]);
        long.schedule_delivery_time = "240101120000000+".into();
        long.validity_period = "000001000000000R".into();
        long.service_type = "CMT".into();
        let mut sc = Tlvs::default();
        sc.set(tag::SC_INTERFACE_VERSION, vec![0x34]);
        for mode in [BindMode::Transmitter, BindMode::Receiver, BindMode::Transceiver] {
            round_trip(Pdu::request(
                9,
                Body::Bind(Bind {
                    mode,
                    system_id: "abcdefghijklmno".into(),
                    password: "12345678".into(),
                    system_type: "VMS".into(),
                    interface_version: 0x34,
                    addr_ton: 2,
                    addr_npi: 8,
                    address_range: "^1555".into(),
                }),
            ));
            round_trip(Pdu::response(9, ok, Body::BindResp(BindResp { mode, system_id: "SMSC".into(), tlvs: sc.clone() })));
        }
        for body in [Body::Unbind, Body::UnbindResp, Body::EnquireLink, Body::EnquireLinkResp, Body::GenericNack] {
            round_trip(Pdu::response(0x7FFF_FFFF, ok, body));
        }
        round_trip(Pdu::response(3, CommandStatus::ESME_RINVCMDID, Body::GenericNack));
        round_trip(Pdu::request(4, Body::SubmitSm(Box::new(submit()))));
        round_trip(Pdu::request(4, Body::SubmitSm(Box::new(long.clone()))));
        round_trip(Pdu::request(5, Body::DeliverSm(Box::new(long))));
        round_trip(Pdu::response(4, ok, Body::SubmitSmResp(SmResp { message_id: "x".repeat(64), tlvs: Tlvs::default() })));
        round_trip(Pdu::response(5, ok, Body::DeliverSmResp(SmResp::default())));
        round_trip(Pdu::request(6, Body::Outbind(Outbind { system_id: "smsc".into(), password: "pw".into() })));
        round_trip(Pdu::request(
            7,
            Body::AlertNotification(AlertNotification {
                source: Address::international("1555"),
                esme: Address::alphanumeric("Dialtone"),
                tlvs: Tlvs(vec![Tlv { tag: 0x0422, value: vec![0] }]),
            }),
        ));
        round_trip(Pdu::request(8, Body::QuerySm(QuerySm { message_id: "m1".into(), source: Address::default() })));
        round_trip(Pdu::response(
            8,
            ok,
            Body::QuerySmResp(QuerySmResp {
                message_id: "m1".into(),
                final_date: String::new(),
                message_state: 2,
                error_code: 0,
            }),
        ));
        // Latin-1 octets in a C-Octet String survive.
        round_trip(Pdu::request(10, Body::Outbind(Outbind { system_id: "café".into(), password: String::new() })));
    }

    #[test]
    fn error_responses_without_body() {
        let nack = bytes("00000010 80000004 00000058 00000003");
        let pdu = Pdu::parse(&nack).unwrap();
        assert_eq!(pdu.command_status, CommandStatus::ESME_RTHROTTLED);
        assert_eq!(pdu.body, Body::SubmitSmResp(SmResp::default()));
        let bind = bytes("00000010 80000009 0000000E 00000001");
        assert!(matches!(Pdu::parse(&bind).unwrap().body, Body::BindResp(BindResp { mode: BindMode::Transceiver, .. })));
        // A deliver_sm_resp without its NUL is common.
        let dresp = bytes("00000010 80000005 00000000 00000001");
        assert_eq!(Pdu::parse(&dresp).unwrap().body, Body::DeliverSmResp(SmResp::default()));
        // But a successful submit_sm_resp must name the message.
        let bad = bytes("00000010 80000004 00000000 00000001");
        assert_eq!(Pdu::parse(&bad), Err(PduError::Truncated(Field::MessageId)));
    }

    #[test]
    fn malformed_bodies_name_their_status() {
        // The fixtures' command_length is filled in: each is wrong only where it says.
        let status = |spec: &str| {
            let mut pdu = bytes(spec);
            let len = pdu.len() as u32;
            pdu[..4].copy_from_slice(&len.to_be_bytes());
            Pdu::parse(&pdu).unwrap_err().command_status()
        };
        // Unknown command.
        assert_eq!(status("00000010 00000999 00000000 00000001"), CommandStatus::ESME_RINVCMDID);
        // system_id of 16 characters (no room for the NUL).
        assert_eq!(
            status(r#"00000030 00000002 00000000 00000001 "abcdefghijklmnop" 00 00 00 34 00 00 00"#),
            CommandStatus::ESME_RINVSYSID
        );
        // Destination address unterminated.
        assert_eq!(status(r#"00000018 00000004 00000000 00000001 00 01 01 "1" 00 01 01 "2""#), CommandStatus::ESME_RINVDSTADR);
        // sm_length past the end.
        assert_eq!(
            status(r#"00000000 00000004 00000000 00000001 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 09 "Hi""#),
            CommandStatus::ESME_RINVMSGLEN
        );
        // A TLV that runs past the PDU.
        assert_eq!(
            status(r#"00000000 00000004 00000000 00000001 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 0424 0009 "ab""#),
            CommandStatus::ESME_RINVOPTPARSTREAM
        );
        // Bytes after a body that has none.
        assert_eq!(status("00000011 00000015 00000000 00000001 00"), CommandStatus::ESME_RINVCMDLEN);
        // command_length disagreeing with the bytes given.
        let short = Pdu::parse(&bytes("00000020 00000015 00000000 00000001")).unwrap_err();
        assert_eq!(short, PduError::LengthMismatch { declared: 32, actual: 16 });
        assert_eq!(short.command_status(), CommandStatus::ESME_RINVCMDLEN);
        assert_eq!(Pdu::parse(&[0; 4]), Err(PduError::Truncated(Field::Header)));
    }

    #[test]
    fn encoding_checks_limits() {
        let mut sm = submit();
        sm.destination.addr = "1".repeat(21);
        assert_eq!(
            Pdu::request(1, Body::SubmitSm(Box::new(sm.clone()))).encode(),
            Err(PduError::TooLong { field: Field::DestinationAddr, max: 21 })
        );
        sm.destination.addr = "€".into();
        assert_eq!(Pdu::request(1, Body::SubmitSm(Box::new(sm.clone()))).encode(), Err(PduError::BadChar(Field::DestinationAddr)));
        sm.destination.addr = "1".into();
        sm.short_message = vec![0; 256];
        assert!(Pdu::request(1, Body::SubmitSm(Box::new(sm.clone()))).encode().is_err());
        sm.short_message.clear();
        sm.tlvs.set(tag::MESSAGE_PAYLOAD, vec![0; 65_500]);
        assert!(matches!(
            Pdu::request(1, Body::SubmitSm(Box::new(sm))).encode(),
            Err(PduError::BadCommandLength(_))
        ));
    }
}
