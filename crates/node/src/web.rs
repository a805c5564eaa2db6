//! What browsers reach on the HTTP listener: SIP over WebSocket at `/sip` (RFC 7118).
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
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let asks_sip = upgrade
        .requested_protocols()
        .any(|p| p.to_str().is_ok_and(|p| p.trim().eq_ignore_ascii_case("sip")));
    if !asks_sip {
        return (
            StatusCode::BAD_REQUEST,
            "SIP over WebSocket needs the 'sip' subprotocol (RFC 7118)",
        )
            .into_response();
    }
    let events = shared.sip_connections.clone();
    upgrade
        .protocols(["sip"])
        .max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| run(socket, peer, events))
}

async fn run(socket: WebSocket, peer: SocketAddr, events: mpsc::UnboundedSender<StreamEvent>) {
    let transport = Transport::Ws;
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
