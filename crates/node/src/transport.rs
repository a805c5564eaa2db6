//! SIP transports: one UDP socket and a TCP listener with its connections.
//!
//! Transports only move bytes. Each TCP connection has a reader task that frames messages with
//! `sip::StreamFramer` and hands each whole message to the SIP task, tagged with the peer address,
//! and a writer task fed by a channel. The SIP task sends by peer address; a TCP send to a peer
//! without a connection opens one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

/// What the transports hand to the SIP task besides UDP datagrams.
pub enum TcpEvent {
    /// One whole SIP message from a TCP peer.
    Message { peer: SocketAddr, bytes: Vec<u8> },
    /// A connection was accepted or opened; sends to `peer` go to `writer`.
    Opened {
        peer: SocketAddr,
        writer: mpsc::UnboundedSender<Vec<u8>>,
    },
    /// A connection ended.
    Closed { peer: SocketAddr },
}

pub struct Transports {
    pub udp: Arc<UdpSocket>,
    pub local: SocketAddr,
    tcp_writers: HashMap<SocketAddr, mpsc::UnboundedSender<Vec<u8>>>,
    events: mpsc::UnboundedSender<TcpEvent>,
}

/// UDP and TCP on the same port. With port 0 the kernel picks the UDP port, and another process
/// may already hold that port for TCP: then a new pair is tried (a fixed port fails at once).
async fn bind_pair(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let mut attempts = 0;
    loop {
        let udp = UdpSocket::bind(addr).await?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(listener) => return Ok((udp, listener)),
            Err(e)
                if addr.port() == 0
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && attempts < 16 =>
            {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

impl Transports {
    /// Binds UDP and TCP on `addr` (the same port for both) and starts accepting TCP connections.
    pub async fn bind(
        addr: SocketAddr,
    ) -> std::io::Result<(Transports, mpsc::UnboundedReceiver<TcpEvent>)> {
        let (udp, listener) = bind_pair(addr).await?;
        let local = udp.local_addr()?;
        let (events, rx) = mpsc::unbounded_channel();
        let accept_events = events.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        let writer = spawn_connection(stream, peer, accept_events.clone());
                        if accept_events
                            .send(TcpEvent::Opened { peer, writer })
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "SIP TCP accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Ok((
            Transports {
                udp: Arc::new(udp),
                local,
                tcp_writers: HashMap::new(),
                events,
            },
            rx,
        ))
    }

    pub fn handle_tcp_opened(&mut self, peer: SocketAddr, writer: mpsc::UnboundedSender<Vec<u8>>) {
        self.tcp_writers.insert(peer, writer);
    }

    pub fn handle_tcp_closed(&mut self, peer: SocketAddr) {
        self.tcp_writers.remove(&peer);
    }

    pub fn send(&mut self, transmit: sip::transaction::Transmit) {
        let sip::transaction::Transmit {
            destination,
            transport,
            bytes,
        } = transmit;
        match transport {
            sip::Transport::Udp => {
                // A full socket buffer drops the datagram; SIP's retransmissions cover that.
                if let Err(e) = self.udp.try_send_to(&bytes, destination) {
                    tracing::debug!(%destination, error = %e, "SIP UDP send failed");
                }
            }
            sip::Transport::Tcp => {
                if let Some(writer) = self.tcp_writers.get(&destination) {
                    if writer.send(bytes).is_ok() {
                        return;
                    }
                    self.tcp_writers.remove(&destination);
                    return;
                }
                let events = self.events.clone();
                let (writer, queue) = mpsc::unbounded_channel();
                // Queue the message before the connection exists, so it goes first once it does.
                let _ = writer.send(bytes);
                self.tcp_writers.insert(destination, writer.clone());
                tokio::spawn(async move {
                    match TcpStream::connect(destination).await {
                        Ok(stream) => run_connection(stream, destination, events, queue).await,
                        Err(e) => {
                            tracing::info!(%destination, error = %e, "SIP TCP connect failed");
                            let _ = events.send(TcpEvent::Closed { peer: destination });
                        }
                    }
                });
            }
        }
    }
}

fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    events: mpsc::UnboundedSender<TcpEvent>,
) -> mpsc::UnboundedSender<Vec<u8>> {
    let (writer, queue) = mpsc::unbounded_channel();
    tokio::spawn(run_connection(stream, peer, events, queue));
    writer
}

async fn run_connection(
    stream: TcpStream,
    peer: SocketAddr,
    events: mpsc::UnboundedSender<TcpEvent>,
    mut queue: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let _ = stream.set_nodelay(true);
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        while let Some(bytes) = queue.recv().await {
            if write.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut framer = sip::StreamFramer::new();
    let mut buf = vec![0u8; 16 * 1024];
    'read: loop {
        let n = match read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        framer.push(&buf[..n]);
        loop {
            match framer.pop() {
                Ok(Some(bytes)) => {
                    if events.send(TcpEvent::Message { peer, bytes }).is_err() {
                        break 'read;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(%peer, error = %e, "closing SIP TCP connection: bad framing");
                    break 'read;
                }
            }
        }
    }
    writer.abort();
    let _ = events.send(TcpEvent::Closed { peer });
}
