//! Messaging TwiML: the `<Response>` an app answers an incoming SMS webhook with, `<Message>`
//! (reply or send) and `<Redirect>`. Shares the voice parser's element tree, attribute readers
//! and errors, so a broken document reads the same way in both (Twilio 12100).

use crate::parse::{read_tree, reject_text, url_content, Attrs, Element, Node};
use crate::verb::{Method, Redirect, Warning};
use crate::TwimlError;

/// Twilio's schema warning: the document ran, but part of it was not used as written.
pub const WARN_SCHEMA: u32 = 12200;

/// A parsed messaging `<Response>`: its verbs in document order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessagingDocument {
    pub verbs: Vec<MessagingVerb>,
    /// What was accepted and not carried out (`<Media>`: Dialtone sends SMS only).
    pub warnings: Vec<Warning>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessagingVerb {
    Message(Message),
    Redirect(Redirect),
}

impl MessagingVerb {
    /// The element name as written in TwiML.
    pub fn name(&self) -> &str {
        match self {
            MessagingVerb::Message(_) => "Message",
            MessagingVerb::Redirect(_) => "Redirect",
        }
    }
}

/// `<Message>`: send a text. Without `to`/`from` it replies to the incoming message (to its
/// sender, from the number it was sent to); the runtime fills those in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// The text: the element's own text or its `<Body>`, trimmed.
    pub body: String,
    pub to: Option<String>,
    pub from: Option<String>,
    /// Requested with the message's status once it is sent.
    pub action: Option<String>,
    /// Method for `action`. Default POST.
    pub method: Method,
    pub status_callback: Option<String>,
    /// `<Media>` URLs, as written; not sent (see [`MessagingDocument::warnings`]).
    pub media: Vec<String>,
}

/// Parse a messaging TwiML document. Voice verbs (`<Say>`, `<Dial>`...) are refused like any
/// unknown element: they mean nothing to a message.
pub fn parse_messaging(text: &str) -> Result<MessagingDocument, TwimlError> {
    let root = read_tree(text)?;
    if root.name != "Response" {
        return Err(TwimlError::Root { found: root.name });
    }
    let mut doc = MessagingDocument::default();
    for node in &root.children {
        match node {
            Node::Element(el) => match el.name.as_str() {
                "Message" => {
                    let message = read_message(el, &mut doc.warnings)?;
                    doc.verbs.push(MessagingVerb::Message(message));
                }
                "Redirect" => doc.verbs.push(MessagingVerb::Redirect(read_redirect(el)?)),
                name => {
                    return Err(TwimlError::UnexpectedElement {
                        name: name.to_owned(),
                        parent: "Response".to_owned(),
                    })
                }
            },
            Node::Text(t) => reject_text(t, "Response")?,
        }
    }
    Ok(doc)
}

fn read_message(el: &Element, warnings: &mut Vec<Warning>) -> Result<Message, TwimlError> {
    let a = Attrs { el };
    let mut text = String::new();
    let mut body: Option<String> = None;
    let mut media = Vec::new();
    for node in &el.children {
        match node {
            Node::Text(t) => text.push_str(t),
            Node::Element(child) if child.name == "Body" => {
                if body.is_some() {
                    return Err(content("Message", "at most one <Body>"));
                }
                body = Some(url_content(child)?);
            }
            Node::Element(child) if child.name == "Media" => {
                let url = url_content(child)?;
                if url.is_empty() {
                    return Err(content("Media", "a URL is required"));
                }
                warnings.push(Warning {
                    code: WARN_SCHEMA,
                    message: format!("<Media>{url}</Media> is not sent: only SMS is supported"),
                });
                media.push(url);
            }
            Node::Element(child) => {
                return Err(TwimlError::UnexpectedElement {
                    name: child.name.clone(),
                    parent: "Message".to_owned(),
                })
            }
        }
    }
    let text = text.trim();
    let body = match body {
        Some(_) if !text.is_empty() => {
            return Err(content("Message", "text and <Body> cannot both be given"))
        }
        Some(body) => body,
        None => text.to_owned(),
    };
    if body.is_empty() && media.is_empty() {
        return Err(content("Message", "a body is required"));
    }
    Ok(Message {
        body,
        to: a.string("to").filter(|v| !v.is_empty()),
        from: a.string("from").filter(|v| !v.is_empty()),
        action: a.url("action"),
        method: a.method("method")?,
        status_callback: a.url("statusCallback"),
        media,
    })
}

fn read_redirect(el: &Element) -> Result<Redirect, TwimlError> {
    let url = url_content(el)?;
    if url.is_empty() {
        return Err(content("Redirect", "a URL is required"));
    }
    Ok(Redirect {
        url,
        method: Attrs { el }.method("method")?,
    })
}

fn content(verb: &str, reason: &str) -> TwimlError {
    TwimlError::Content {
        verb: verb.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(xml: &str) -> Message {
        let doc = parse_messaging(xml).unwrap_or_else(|e| panic!("{xml}: {e}"));
        match doc.verbs.as_slice() {
            [MessagingVerb::Message(m)] => m.clone(),
            other => panic!("not one Message: {other:?}"),
        }
    }

    #[test]
    fn empty_response_has_no_verbs() {
        assert_eq!(
            parse_messaging("<Response/>").unwrap(),
            MessagingDocument::default()
        );
        let doc = parse_messaging("<?xml version=\"1.0\"?>\n<Response>\n</Response>").unwrap();
        assert!(doc.verbs.is_empty());
    }

    #[test]
    fn message_text_or_body() {
        assert_eq!(
            message("<Response><Message> Hello &amp; thanks </Message></Response>"),
            Message {
                body: "Hello & thanks".into(),
                ..Message::default()
            }
        );
        let m = message(
            r#"<Response><Message to="+15550001111" from="+15550002222" action="/sent" method="GET" statusCallback="https://cb.test/s"><Body>Hi there</Body></Message></Response>"#,
        );
        assert_eq!(m.body, "Hi there");
        assert_eq!(m.to.as_deref(), Some("+15550001111"));
        assert_eq!(m.from.as_deref(), Some("+15550002222"));
        assert_eq!(m.action.as_deref(), Some("/sent"));
        assert_eq!(m.method, Method::Get);
        assert_eq!(m.status_callback.as_deref(), Some("https://cb.test/s"));
        // Empty attributes count as absent.
        let m = message(r#"<Response><Message to="" action="">x</Message></Response>"#);
        assert_eq!((m.to, m.action), (None, None));
    }

    #[test]
    fn media_is_accepted_with_a_warning() {
        let doc = parse_messaging(
            "<Response><Message><Body>look</Body><Media>https://x.test/a.png</Media></Message></Response>",
        )
        .unwrap();
        let [MessagingVerb::Message(m)] = doc.verbs.as_slice() else {
            panic!("{doc:?}")
        };
        assert_eq!(m.body, "look");
        assert_eq!(m.media, ["https://x.test/a.png"]);
        assert_eq!(doc.warnings.len(), 1);
        assert_eq!(doc.warnings[0].code, WARN_SCHEMA);
        // Media alone is a message without text: accepted, and warned about.
        let doc = parse_messaging(
            "<Response><Message><Media>https://x.test/a.png</Media></Message></Response>",
        )
        .unwrap();
        assert_eq!(doc.warnings.len(), 1);
    }

    #[test]
    fn redirect_and_several_verbs_in_order() {
        let doc = parse_messaging(
            r#"<Response><Message>one</Message><Message to="+15550001111">two</Message><Redirect method="GET"> /next </Redirect></Response>"#,
        )
        .unwrap();
        let names: Vec<&str> = doc.verbs.iter().map(MessagingVerb::name).collect();
        assert_eq!(names, ["Message", "Message", "Redirect"]);
        assert_eq!(
            doc.verbs[2],
            MessagingVerb::Redirect(Redirect {
                url: "/next".into(),
                method: Method::Get
            })
        );
    }

    #[test]
    fn errors_are_12100_and_name_the_fault() {
        let err = |xml: &str| {
            let e = parse_messaging(xml).expect_err(xml);
            assert_eq!(e.code(), 12100);
            e
        };
        assert_eq!(
            err("<Response><Say>hi</Say></Response>"),
            TwimlError::UnexpectedElement {
                name: "Say".into(),
                parent: "Response".into()
            }
        );
        assert_eq!(
            err("<Response><Message><Foo/>hi</Message></Response>"),
            TwimlError::UnexpectedElement {
                name: "Foo".into(),
                parent: "Message".into()
            }
        );
        assert!(matches!(
            err("<Response><Message/></Response>"),
            TwimlError::Content { .. }
        ));
        assert!(matches!(
            err("<Response><Message>a<Body>b</Body></Message></Response>"),
            TwimlError::Content { .. }
        ));
        assert!(matches!(
            err("<Response><Message><Body>a</Body><Body>b</Body></Message></Response>"),
            TwimlError::Content { .. }
        ));
        assert!(matches!(
            err("<Response><Message method=\"PUT\">x</Message></Response>"),
            TwimlError::Attribute { .. }
        ));
        assert!(matches!(
            err("<Response><Redirect/></Response>"),
            TwimlError::Content { .. }
        ));
        assert!(matches!(
            err("<Message>x</Message>"),
            TwimlError::Root { .. }
        ));
        assert!(matches!(
            err("<Response>stray</Response>"),
            TwimlError::Content { .. }
        ));
        assert!(matches!(
            err("<Response><Message>x</Response>"),
            TwimlError::Xml { .. }
        ));
        assert_eq!(err(""), TwimlError::Empty);
        assert!(err("<Response><Dial>+1555</Dial></Response>")
            .to_string()
            .contains("<Dial>"));
    }
}
