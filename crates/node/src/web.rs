//! What browsers reach on the HTTP listener: SIP over WebSocket at `/sip` (RFC 7118), the
//! browser SDK (`/js/dialtone.js`), the "call us" page (`/call`), the agent console
//! (`/console`, its sign-in and recent calls) and their assets (`/web/...`), all built into the
//! binary from `web/`.
//!
//! A connection is a SIP transport like a TCP one: each text or binary frame is one SIP message,
//! handed to the SIP task with the connection's peer address; what the SIP task sends to that
//! address goes back as a text frame. The upgrade must ask for the `sip` subprotocol.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sip::Transport;
use tokio::sync::mpsc;

use crate::transport::StreamEvent;
use crate::Shared;

/// The largest SIP message a browser may send in one frame.
const MAX_MESSAGE: usize = 64 * 1024;

pub async fn sip_websocket(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(crate::tls::PeerAddr(peer)): ConnectInfo<crate::tls::PeerAddr>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let asks_sip = upgrade.requested_protocols().any(|p| {
        p.to_str()
            .is_ok_and(|p| p.trim().eq_ignore_ascii_case("sip"))
    });
    if !asks_sip {
        return (
            StatusCode::BAD_REQUEST,
            "SIP over WebSocket needs the 'sip' subprotocol (RFC 7118)",
        )
            .into_response();
    }
    let events = shared.sip_connections.clone();
    let transport = if shared.config.http_tls.is_some() {
        Transport::Wss
    } else {
        Transport::Ws
    };
    upgrade
        .protocols(["sip"])
        .max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| run(socket, peer, transport, events))
}

async fn run(
    socket: WebSocket,
    peer: SocketAddr,
    transport: Transport,
    events: mpsc::UnboundedSender<StreamEvent>,
) {
    let (writer, mut queue) = mpsc::unbounded_channel::<Vec<u8>>();
    if events
        .send(StreamEvent::Opened {
            transport,
            peer,
            writer,
        })
        .is_err()
    {
        return;
    }
    tracing::debug!(%peer, "SIP WebSocket connected");
    let (mut sink, mut stream) = futures_util::StreamExt::split(socket);
    let send = tokio::spawn(async move {
        use futures_util::SinkExt;
        while let Some(bytes) = queue.recv().await {
            let frame = match String::from_utf8(bytes) {
                Ok(text) => Message::Text(text.into()),
                Err(e) => Message::Binary(e.into_bytes().into()),
            };
            if sink.send(frame).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    while let Some(frame) = futures_util::StreamExt::next(&mut stream).await {
        let bytes = match frame {
            Ok(Message::Text(text)) => text.as_str().as_bytes().to_vec(),
            Ok(Message::Binary(bytes)) => bytes.to_vec(),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(_)) | Err(_) => break,
        };
        if events
            .send(StreamEvent::Message {
                transport,
                peer,
                bytes,
            })
            .is_err()
        {
            break;
        }
    }
    send.abort();
    tracing::debug!(%peer, "SIP WebSocket closed");
    let _ = events.send(StreamEvent::Closed { transport, peer });
}

/// The files of `web/`, built into the binary: (path, content type, bytes).
const FILES: &[(&str, &str, &str)] = &[
    (
        "/js/dialtone.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/dist/dialtone.js"),
    ),
    (
        "/call",
        "text/html; charset=utf-8",
        include_str!("../../../web/pages/call.html"),
    ),
    (
        "/console",
        "text/html; charset=utf-8",
        include_str!("../../../web/pages/console.html"),
    ),
    (
        "/web/call.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/pages/call.js"),
    ),
    (
        "/web/console.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../web/pages/console.js"),
    ),
    (
        "/web/style.css",
        "text/css; charset=utf-8",
        include_str!("../../../web/pages/style.css"),
    ),
];

/// The routes for the files above, to merge into the HTTP router (no credentials needed).
pub fn file_routes<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    let mut router = axum::Router::new();
    for &(path, content_type, body) in FILES {
        router = router.route(
            path,
            axum::routing::get(move || async move {
                (
                    [
                        (axum::http::header::CONTENT_TYPE, content_type),
                        (axum::http::header::CACHE_CONTROL, "no-cache"),
                    ],
                    body,
                )
            }),
        );
    }
    router
}

/// The API key the console signs its agents' tokens with: one per account, made on the first
/// sign-in and listed with the account's other keys (deleting it signs every agent out).
const CONSOLE_KEY_NAME: &str = "Dialtone agent console";

/// How long an agent's token lasts; the console renews it before it expires.
const CONSOLE_TOKEN_TTL: u32 = 3600;

#[derive(serde::Deserialize)]
pub struct ConsoleLogin {
    username: String,
    password: String,
    #[serde(default)]
    domain: Option<String>,
}

fn console_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(
            serde_json::json!({"code": code, "message": message, "status": status.as_u16()}),
        ),
    )
        .into_response()
}

/// `POST /console/login`: an agent signs in with its SIP credential (a username of a credential
/// list of the account, under the SIP Domain `domain` or the default account) and gets an access
/// token for the identity `username`, incoming calls allowed.
pub async fn console_login(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(crate::tls::PeerAddr(peer)): ConnectInfo<crate::tls::PeerAddr>,
    axum::Form(login): axum::Form<ConsoleLogin>,
) -> Response {
    if shared.registrar.is_blocked(peer.ip()) {
        tracing::info!(%peer, "console sign-in refused: source blocked after failures");
        return console_error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests");
    }
    let refused = || {
        console_error(
            StatusCode::UNAUTHORIZED,
            20003,
            "Authentication Error - invalid username or password",
        )
    };
    let internal = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "console sign-in failed");
        console_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            20500,
            "Internal Server Error",
        )
    };
    let store = &shared.store;
    let host = login.domain.clone().unwrap_or_default();
    let scope = match store.sip_realm_scope(host.trim()).await {
        Ok(Some(scope)) => scope,
        Ok(None) => {
            shared.registrar.note_failure(peer.ip());
            return refused();
        }
        Err(e) => return internal(&e),
    };
    let stored = match store.sip_digests(&scope, &login.username).await {
        Ok(d) => d,
        Err(e) => return internal(&e),
    };
    let given = store::sip::SipDigests::new(&login.username, &login.password);
    let matches =
        stored.is_some_and(|d| api::constant_time_eq(d.sha256.as_bytes(), given.sha256.as_bytes()));
    if !matches {
        let verdict = shared.registrar.note_failure(peer.ip());
        tracing::info!(username = %login.username, %peer, ?verdict, "console sign-in refused");
        return refused();
    }
    shared.registrar.note_success(peer.ip());
    let account = scope.account_sid;
    // The account's own CRM link, else the node's.
    let crm_url = match store.account(&account).await {
        Ok(a) => a.and_then(|a| a.console_crm_url),
        Err(e) => return internal(&e),
    }
    .or_else(|| shared.config.console_crm_url.clone());
    let (key, secret) = match console_key(&shared, &account).await {
        Ok(k) => k,
        Err(e) => return internal(&e),
    };
    let now = chrono::Utc::now().timestamp();
    let voice = api::access_token::VoiceGrant {
        incoming_allow: true,
        outgoing_application_sid: None,
        outgoing_params: Vec::new(),
    };
    let token = api::access_token::mint(
        &key,
        &secret,
        &account,
        &login.username,
        &voice,
        CONSOLE_TOKEN_TTL,
        now,
    );
    axum::Json(serde_json::json!({
        "token": token,
        "identity": login.username,
        "account_sid": account,
        "crm_url_template": crm_url,
        "expires_in": CONSOLE_TOKEN_TTL,
    }))
    .into_response()
}

/// The account's console key and its secret, made on first use.
async fn console_key(
    shared: &Shared,
    account: &model::AccountSid,
) -> Result<(model::ApiKeySid, String), store::StoreError> {
    let store = &shared.store;
    let page = store::PageRequest {
        size: 1000,
        after: None,
        offset: 0,
    };
    for key in store.list_api_keys(account, &page).await?.items {
        if key.friendly_name == CONSOLE_KEY_NAME {
            if let Some((_, secret)) = store.api_key_signing_secret(&key.sid).await? {
                return Ok((key.sid, secret));
            }
        }
    }
    let now = chrono::Utc::now();
    let record = model::ApiKeyRecord {
        sid: model::ApiKeySid::generate(),
        account_sid: *account,
        friendly_name: CONSOLE_KEY_NAME.to_owned(),
        date_created: now,
        date_updated: now,
    };
    let secret: String = {
        use rand::Rng;
        rand::thread_rng()
            .sample_iter(&rand::distributions::Alphanumeric)
            .take(32)
            .map(char::from)
            .collect()
    };
    store.create_api_key(&record, &secret).await?;
    Ok((record.sid, secret))
}

/// `GET /console/calls` with the agent's token (`Authorization: Bearer`): the 20 newest calls
/// from or to `client:IDENTITY`, in the Calls API's shape.
pub async fn console_calls(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    let now = chrono::Utc::now().timestamp();
    let claims = match api::access_token::verify_with_store(&shared.store, token, now).await {
        Ok(c) => c,
        Err(e) => return console_error(StatusCode::UNAUTHORIZED, u32::from(e.code()), e.message()),
    };
    let client = format!("client:{}", claims.identity);
    let page = store::PageRequest {
        size: 20,
        after: None,
        offset: 0,
    };
    let mut calls = Vec::new();
    for filter in [
        store::CallFilter {
            to: Some(client.clone()),
            ..Default::default()
        },
        store::CallFilter {
            from: Some(client.clone()),
            ..Default::default()
        },
    ] {
        match shared
            .store
            .list_calls(&claims.account_sid, &filter, &page)
            .await
        {
            Ok(p) => calls.extend(p.items),
            Err(e) => {
                tracing::error!(error = %e, "console calls lookup failed");
                return console_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    20500,
                    "Internal Server Error",
                );
            }
        }
    }
    calls.sort_by_key(|c| std::cmp::Reverse(c.date_created));
    calls.dedup_by(|a, b| a.sid == b.sid);
    calls.truncate(20);
    let calls: Vec<_> = calls.iter().map(api::call_json).collect();
    axum::Json(serde_json::json!({"calls": calls, "page": 0, "page_size": 20})).into_response()
}
