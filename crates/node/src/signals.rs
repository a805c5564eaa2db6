//! The messages between the SIP task and the calls, and the SIP side of a call: the lowest
//! layer of `node`, imported by the SIP task, the registrar, the trunks, the legs and the calls,
//! so none of them needs to import another for its types.

use std::net::SocketAddr;

use sip::dialog::{Dialog, DialogId};
use sip::transaction::ServerTxId;
use sip::{Request, Response, Transport};
use tokio::sync::mpsc;

/// What call tasks ask of the SIP task.
#[derive(Debug)]
pub enum SipCommand {
    /// Answer a server transaction.
    Respond { tx: ServerTxId, response: Response },
    /// Start a client transaction (an in-dialog BYE, say); its response goes back to `reply`.
    Request {
        request: Request,
        destination: SocketAddr,
        transport: Transport,
        reply: Option<mpsc::UnboundedSender<CallSignal>>,
    },
    /// Send without a transaction: the ACK for a 2xx.
    Stateless {
        message: sip::Message,
        destination: SocketAddr,
        transport: Transport,
    },
    /// The call is over: forget its routes.
    Ended {
        dialog: DialogId,
        invite_tx: ServerTxId,
    },
    /// CANCEL the INVITE we sent with this Call-ID (no effect once it has a final response).
    Cancel { call_id: String },
    /// An outbound call is over: forget its INVITE and dialog routes.
    OutboundEnded { call_id: String },
}

/// Methods we route or answer, for Allow headers.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REGISTER";

/// What the SIP task tells a call.
#[derive(Debug)]
pub enum CallSignal {
    /// The ACK for our 2xx.
    Ack { request: Request },
    /// The caller cancelled before we answered (the endpoint already answered the CANCEL).
    Cancel,
    /// Our 2xx was never acknowledged.
    AckTimeout,
    /// An in-dialog request: BYE, re-INVITE, INFO.
    Request { tx: ServerTxId, request: Request },
    /// A response to a request this call sent (its BYE).
    Response { response: Response },
    /// A request this call sent got no final response.
    RequestTimeout,
}

/// A new INVITE, as the SIP task hands it over.
pub struct NewCall {
    pub tx: ServerTxId,
    pub request: Request,
    pub source: SocketAddr,
    pub transport: Transport,
    pub local_tag: String,
    pub dialog: DialogId,
    pub signals: mpsc::UnboundedReceiver<CallSignal>,
    pub self_signals: mpsc::UnboundedSender<CallSignal>,
}

/// The SIP side of a call, as the shared loop needs it.
pub(crate) struct Leg {
    /// Where in-dialog requests go: the INVITE's source (inbound), or where we sent it.
    pub peer: SocketAddr,
    pub transport: Transport,
    pub signals: mpsc::UnboundedReceiver<CallSignal>,
    pub self_signals: mpsc::UnboundedSender<CallSignal>,
    /// Inbound: the INVITE still to be answered (or refused).
    pub invite: Option<ServerInvite>,
    pub dialog: Option<Dialog>,
    /// Outbound: our ACK for the 2xx, sent again when the 2xx is retransmitted.
    pub ack: Option<Request>,
}

#[derive(Clone)]
pub(crate) struct ServerInvite {
    pub tx: ServerTxId,
    pub request: Request,
    pub local_tag: String,
}
