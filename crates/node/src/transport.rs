//! SIP transports: one UDP socket, a TCP listener with its connections, and the WebSocket
//! connections browsers open on the HTTP listener's `/sip` (RFC 7118; accepted in `http`).
//!
//! Transports only move bytes. Each TCP connection has a reader task that frames messages with
//! `sip::StreamFramer` and hands each whole message to the SIP task, tagged with the peer address,
//! and a writer task fed by a channel; a WebSocket carries one message per frame. The SIP task
//! sends by transport and peer address; a TCP send to a peer without a connection opens one, a
//! WebSocket send without one is dropped (only the browser can connect).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use sip::Transport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

/// What the transports hand to the SIP task besides UDP datagrams: what happens on connections
/// (TCP or WebSocket), each named by its transport and peer address.
pub enum StreamEvent {
    /// One whole SIP message from a connected peer.
    Message {
        transport: Transport,
        peer: SocketAddr,
        bytes: Vec<u8>,
    },
    /// A connection was accepted or opened; sends to `peer` go to `writer`.
    Opened {
        transport: Transport,
        peer: SocketAddr,
        writer: mpsc::UnboundedSender<Vec<u8>>,
    },
    /// A connection ended.
    Closed {
        transport: Transport,
        peer: SocketAddr,
    },
}

pub struct Transports {
    pub udp: Arc<UdpSocket>,
    pub local: SocketAddr,
    writers: HashMap<(Transport, SocketAddr), mpsc::UnboundedSender<Vec<u8>>>,
    events: mpsc::UnboundedSender<StreamEvent>,
}

/// What the SIP UDP socket asks the kernel to buffer: a burst the SIP task has not read yet
/// (a few milliseconds of thousands of datagrams a second) waits here instead of being dropped.
/// The default (`net.core.rmem_default`, often 208 KiB) holds ~300 INVITEs; the kernel grants at
/// most `net.core.rmem_max` (as root, `SO_RCVBUFFORCE` goes past it).
const SIP_RECEIVE_BUFFER: libc::c_int = 8 << 20;

fn enlarge_receive_buffer(udp: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let fd = udp.as_raw_fd();
    let size = SIP_RECEIVE_BUFFER;
    let set = |option: libc::c_int| {
        // SAFETY: `fd` is the open socket `udp` owns; the option value is a c_int that lives for
        // the call, with its size passed.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                std::ptr::addr_of!(size).cast::<libc::c_void>(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            ) == 0
        }
    };
    if !set(libc::SO_RCVBUFFORCE) && !set(libc::SO_RCVBUF) {
        tracing::warn!(error = %std::io::Error::last_os_error(), "could not enlarge the SIP socket's receive buffer");
    }
}

/// UDP and TCP on the same port. With port 0 the kernel picks the UDP port, and another process
/// may already hold that port for TCP: then a new pair is tried (a fixed port fails at once).
async fn bind_pair(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let mut attempts = 0;
    loop {
        let udp = UdpSocket::bind(addr).await?;
        enlarge_receive_buffer(&udp);
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
    ) -> std::io::Result<(Transports, mpsc::UnboundedReceiver<StreamEvent>)> {
        let (udp, listener) = bind_pair(addr).await?;
        let local = udp.local_addr()?;
        let (events, rx) = mpsc::unbounded_channel();
        let accept_events = events.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        let writer = spawn_connection(stream, peer, accept_events.clone());
                        let opened = StreamEvent::Opened {
                            transport: Transport::Tcp,
                            peer,
                            writer,
                        };
                        if accept_events.send(opened).is_err() {
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
                writers: HashMap::new(),
                events,
            },
            rx,
        ))
    }

    /// Where connections found elsewhere (the HTTP listener's WebSockets) report.
    pub fn events(&self) -> mpsc::UnboundedSender<StreamEvent> {
        self.events.clone()
    }

    pub fn handle_opened(
        &mut self,
        transport: Transport,
        peer: SocketAddr,
        writer: mpsc::UnboundedSender<Vec<u8>>,
    ) {
        self.writers.insert((transport, peer), writer);
    }

    pub fn handle_closed(&mut self, transport: Transport, peer: SocketAddr) {
        self.writers.remove(&(transport, peer));
    }

    pub fn send(&mut self, transmit: sip::transaction::Transmit) {
        let sip::transaction::Transmit {
            destination,
            transport,
            bytes,
        } = transmit;
        match transport {
            Transport::Udp => {
                // A full socket buffer drops the datagram; SIP's retransmissions cover that.
                if let Err(e) = self.udp.try_send_to(&bytes, destination) {
                    tracing::debug!(%destination, error = %e, "SIP UDP send failed");
                }
            }
            Transport::Ws | Transport::Wss => {
                let key = (transport, destination);
                match self.writers.get(&key) {
                    Some(writer) if writer.send(bytes).is_ok() => {}
                    Some(_) => {
                        self.writers.remove(&key);
                    }
                    None => {
                        tracing::debug!(%destination, "SIP WebSocket send with no connection");
                    }
                }
            }
            Transport::Tcp => {
                let key = (Transport::Tcp, destination);
                if let Some(writer) = self.writers.get(&key) {
                    if writer.send(bytes).is_ok() {
                        return;
                    }
                    self.writers.remove(&key);
                    return;
                }
                let events = self.events.clone();
                let (writer, queue) = mpsc::unbounded_channel();
                // Queue the message before the connection exists, so it goes first once it does.
                let _ = writer.send(bytes);
                self.writers.insert(key, writer.clone());
                tokio::spawn(async move {
                    match TcpStream::connect(destination).await {
                        Ok(stream) => run_connection(stream, destination, events, queue).await,
                        Err(e) => {
                            tracing::info!(%destination, error = %e, "SIP TCP connect failed");
                            let _ = events.send(StreamEvent::Closed {
                                transport: Transport::Tcp,
                                peer: destination,
                            });
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
    events: mpsc::UnboundedSender<StreamEvent>,
) -> mpsc::UnboundedSender<Vec<u8>> {
    let (writer, queue) = mpsc::unbounded_channel();
    tokio::spawn(run_connection(stream, peer, events, queue));
    writer
}

async fn run_connection(
    stream: TcpStream,
    peer: SocketAddr,
    events: mpsc::UnboundedSender<StreamEvent>,
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
                    let message = StreamEvent::Message {
                        transport: Transport::Tcp,
                        peer,
                        bytes,
                    };
                    if events.send(message).is_err() {
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
    let _ = events.send(StreamEvent::Closed {
        transport: Transport::Tcp,
        peer,
    });
}
