//! Dialogs (RFC 3261 §12): the state two UAs share after an INVITE succeeds, used to
//! match in-dialog requests and to build them (BYE, re-INVITE, ACK for a 2xx).

use crate::header::NameAddr;
use crate::message::{Method, Request, Response};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialogError {
    #[error("missing or malformed {0}")]
    Missing(&'static str),
    #[error("response does not establish a dialog")]
    NotSuccess,
}

/// Call-ID plus both tags, from this side's point of view.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

impl DialogId {
    /// The dialog an incoming in-dialog request belongs to: our tag is in its To, the peer's
    /// in its From. `None` for out-of-dialog requests (no To tag).
    pub fn for_incoming(request: &Request) -> Option<DialogId> {
        let local_tag = request.to()?.tag()?.to_string();
        let remote_tag = request.from()?.tag().unwrap_or_default().to_string();
        Some(DialogId { call_id: request.call_id()?.to_string(), local_tag, remote_tag })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    id: DialogId,
    local_uri: String,
    remote_uri: String,
    /// Last CSeq number we used (0 = none yet on the UAS side).
    local_seq: u32,
    remote_seq: Option<u32>,
    remote_target: String,
    /// Route set in the order requests traverse it.
    route_set: Vec<String>,
    local_contact: Option<String>,
}

fn header_uri(na: &NameAddr) -> String {
    na.uri.clone()
}

impl Dialog {
    /// The UAS side, created when we answer `invite` with a tagged 1xx/2xx (§12.1.1):
    /// route set from Record-Route in order, remote target from Contact.
    pub fn uas(invite: &Request, local_tag: &str, local_contact: &str) -> Result<Dialog, DialogError> {
        let from = invite.from().ok_or(DialogError::Missing("From"))?;
        let to = invite.to().ok_or(DialogError::Missing("To"))?;
        let call_id = invite.call_id().ok_or(DialogError::Missing("Call-ID"))?;
        let (seq, _) = invite.cseq().ok_or(DialogError::Missing("CSeq"))?;
        let contact = invite.contact().ok_or(DialogError::Missing("Contact"))?;
        Ok(Dialog {
            id: DialogId {
                call_id: call_id.to_string(),
                local_tag: local_tag.to_string(),
                remote_tag: from.tag().unwrap_or_default().to_string(),
            },
            local_uri: header_uri(&to),
            remote_uri: header_uri(&from),
            local_seq: 0,
            remote_seq: Some(seq),
            remote_target: contact.uri,
            route_set: invite.headers.routes("Record-Route").iter().map(ToString::to_string).collect(),
            local_contact: Some(local_contact.to_string()),
        })
    }

    /// The UAC side, from our INVITE and the 2xx that answered it (§12.1.2): route set is
    /// the response's Record-Route reversed.
    pub fn uac(invite: &Request, response: &Response) -> Result<Dialog, DialogError> {
        if !(200..300).contains(&response.status()) {
            return Err(DialogError::NotSuccess);
        }
        let from = invite.from().ok_or(DialogError::Missing("From"))?;
        let to = response.to().ok_or(DialogError::Missing("To"))?;
        let remote_tag = to.tag().ok_or(DialogError::Missing("To tag"))?.to_string();
        let call_id = invite.call_id().ok_or(DialogError::Missing("Call-ID"))?;
        let (seq, _) = invite.cseq().ok_or(DialogError::Missing("CSeq"))?;
        let contact = response.contact().ok_or(DialogError::Missing("Contact"))?;
        let mut route_set: Vec<String> =
            response.headers.routes("Record-Route").iter().map(ToString::to_string).collect();
        route_set.reverse();
        Ok(Dialog {
            id: DialogId {
                call_id: call_id.to_string(),
                local_tag: from.tag().unwrap_or_default().to_string(),
                remote_tag,
            },
            local_uri: header_uri(&from),
            remote_uri: header_uri(&to),
            local_seq: seq,
            remote_seq: None,
            remote_target: contact.uri,
            route_set,
            local_contact: invite.contact().map(|c| c.to_string()),
        })
    }

    pub fn id(&self) -> DialogId {
        self.id.clone()
    }

    pub fn remote_target(&self) -> &str {
        &self.remote_target
    }

    pub fn route_set(&self) -> &[String] {
        &self.route_set
    }

    pub fn local_seq(&self) -> u32 {
        self.local_seq
    }

    /// Checks an incoming in-dialog request's CSeq (§12.2.2) and takes a new remote target
    /// from a target-refresh request. Returns false for an out-of-order request (answer 500).
    pub fn handle_request(&mut self, request: &Request) -> bool {
        let Some((seq, method)) = request.cseq() else { return false };
        if method != Method::Ack && method != Method::Cancel {
            if self.remote_seq.is_some_and(|last| seq <= last) {
                return false;
            }
            self.remote_seq = Some(seq);
        }
        if matches!(method, Method::Invite | Method::Update) {
            if let Some(contact) = request.contact() {
                self.remote_target = contact.uri;
            }
        }
        true
    }

    /// A new in-dialog request (§12.2.1.1) with the next CSeq. No Via: the endpoint adds it.
    pub fn request(&mut self, method: Method) -> Request {
        self.local_seq = self.local_seq.wrapping_add(1).max(1);
        self.build(method, self.local_seq)
    }

    /// The ACK for a 2xx to our INVITE (§13.2.2.4): the INVITE's CSeq number, no new CSeq.
    pub fn ack_for(&self, response: &Response) -> Request {
        let seq = response.cseq().map_or(self.local_seq, |(n, _)| n);
        self.build(Method::Ack, seq)
    }

    fn build(&self, method: Method, seq: u32) -> Request {
        // Loose routing when the first route has `lr`; else strict routing (§12.2.1.1).
        let first_loose = self
            .route_set
            .first()
            .and_then(|r| NameAddr::parse(r))
            .map(|r| r.uri.contains(";lr"));
        let (uri, routes): (String, Vec<String>) = match first_loose {
            // `Some` means the route set is not empty, so the indexing below holds.
            Some(false) => {
                let first = NameAddr::parse(&self.route_set[0]).map(|r| r.uri).unwrap_or_default();
                let mut routes: Vec<String> = self.route_set[1..].to_vec();
                routes.push(format!("<{}>", self.remote_target));
                (first, routes)
            }
            _ => (self.remote_target.clone(), self.route_set.clone()),
        };
        let mut req = Request::new(method.clone(), &uri);
        let h = &mut req.headers;
        h.push("From", &format!("<{}>;tag={}", self.local_uri, self.id.local_tag));
        if self.id.remote_tag.is_empty() {
            h.push("To", &format!("<{}>", self.remote_uri));
        } else {
            h.push("To", &format!("<{}>;tag={}", self.remote_uri, self.id.remote_tag));
        }
        h.push("Call-ID", &self.id.call_id);
        h.push("CSeq", &format!("{seq} {method}"));
        for route in routes {
            h.push("Route", &route);
        }
        if let Some(contact) = &self.local_contact {
            h.push("Contact", contact);
        }
        h.push("Max-Forwards", "70");
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_message, Message};

    fn invite() -> Request {
        let text = "INVITE sip:svc@192.0.2.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKa\r\n\
Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
Record-Route: <sip:p3.example.com;lr>\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=a1\r\nTo: <sip:svc@example.com>\r\nCall-ID: d-1\r\n\
CSeq: 7 INVITE\r\nContact: <sip:alice@192.0.2.10:5062>\r\nContent-Length: 0\r\n\r\n";
        match parse_message(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => unreachable!("the text is a request"),
        }
    }

    #[test]
    fn uas_dialog_builds_bye_and_matches() {
        let inv = invite();
        let mut dialog = Dialog::uas(&inv, "b1", "<sip:dialtone@192.0.2.1>").unwrap();
        assert_eq!(dialog.id(), DialogId { call_id: "d-1".into(), local_tag: "b1".into(), remote_tag: "a1".into() });
        let bye = dialog.request(Method::Bye);
        assert_eq!(bye.uri, "sip:alice@192.0.2.10:5062");
        assert_eq!(bye.headers.get_all("Route").collect::<Vec<_>>(), vec![
            "<sip:p1.example.com;lr>",
            "<sip:p2.example.com;lr>",
            "<sip:p3.example.com;lr>"
        ]);
        assert_eq!(bye.cseq(), Some((1, Method::Bye)));
        assert_eq!(bye.from().unwrap().tag(), Some("b1"));
        assert_eq!(bye.to().unwrap().tag(), Some("a1"));
        assert_eq!(dialog.request(Method::Info).cseq().unwrap().0, 2);

        // The peer's BYE comes with our tag in To.
        let mut peer_bye = Request::new(Method::Bye, "sip:dialtone@192.0.2.1");
        peer_bye.headers.push("From", "<sip:alice@example.com>;tag=a1");
        peer_bye.headers.push("To", "<sip:svc@example.com>;tag=b1");
        peer_bye.headers.push("Call-ID", "d-1");
        peer_bye.headers.push("CSeq", "8 BYE");
        assert_eq!(DialogId::for_incoming(&peer_bye), Some(dialog.id()));
        assert!(dialog.handle_request(&peer_bye));
        assert!(!dialog.handle_request(&peer_bye), "same CSeq again is out of order");
        assert_eq!(DialogId::for_incoming(&inv), None);
    }

    #[test]
    fn uac_dialog_reverses_route_set_and_acks() {
        let inv = invite();
        let mut ok = Response::from_request(&inv, 200, "OK");
        ok.set_to_tag("b1");
        ok.headers.push("Contact", "<sip:svc@192.0.2.1:5070>");
        let mut dialog = Dialog::uac(&inv, &ok).unwrap();
        assert_eq!(dialog.id().local_tag, "a1");
        assert_eq!(dialog.id().remote_tag, "b1");
        assert_eq!(dialog.route_set()[0], "<sip:p3.example.com;lr>");
        let ack = dialog.ack_for(&ok);
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.cseq(), Some((7, Method::Ack)));
        assert_eq!(ack.uri, "sip:svc@192.0.2.1:5070");
        let bye = dialog.request(Method::Bye);
        assert_eq!(bye.cseq(), Some((8, Method::Bye)));
        assert!(Dialog::uac(&inv, &Response::from_request(&inv, 486, "Busy")).is_err());
    }

    #[test]
    fn strict_route_puts_first_route_in_request_uri() {
        let mut inv = invite();
        inv.headers.remove("Record-Route");
        inv.headers.push("Record-Route", "<sip:strict.example.com>");
        let mut dialog = Dialog::uas(&inv, "b1", "<sip:me@192.0.2.1>").unwrap();
        let bye = dialog.request(Method::Bye);
        assert_eq!(bye.uri, "sip:strict.example.com");
        assert_eq!(bye.headers.get("Route"), Some("<sip:alice@192.0.2.10:5062>"));
    }
}
