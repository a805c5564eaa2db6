//! The node's wiring: configuration, shared state, start-up.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::{
    audio, calls_registry, http, media, outbound, routing, sip_task, transport, tts, webhook,
};

/// The validated settings of one node (the binary builds it from defaults, file and env).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub http_addr: SocketAddr,
    pub sip_addr: SocketAddr,
    /// The address put in SDP, Contact and Via.
    pub advertise_ip: IpAddr,
    pub rtp_bind_ip: IpAddr,
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    pub data_dir: PathBuf,
    pub recordings_dir: PathBuf,
    /// Base of the URLs we hand out (RecordingUrl), without a trailing slash.
    pub public_url: String,
    pub media_workers: usize,
    /// Outbound gateways for calls to phone numbers, tried in order (first matching prefix).
    pub trunks: Vec<outbound::Trunk>,
    /// The agent console's CRM link, `{Name}` replaced by the call's parameter of that name.
    pub console_crm_url: Option<String>,
    /// TLS for the HTTP listener (HTTPS, and `wss://` for browsers' SIP).
    pub http_tls: Option<crate::tls::TlsFiles>,
    /// SMS centres to bind to (SMPP); none: no SMS.
    pub smscs: Vec<crate::sms::SmscConfig>,
    /// The rates calls are priced at when they end (`crate::pricing`); none: calls stay
    /// unpriced (`price` null).
    pub pricing: Option<std::sync::Arc<billing::RateTable>>,
    /// Calls in progress beyond which new ones are refused (`crate::overload`); `None`: derived
    /// from the open-file limit and the RTP port range.
    pub max_calls: Option<u64>,
}

impl NodeConfig {
    /// The advertised address as it goes in a SIP URI (IPv6 in brackets).
    pub fn advertise_ip_for_uri(&self) -> String {
        match self.advertise_ip {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        }
    }

    /// Our Contact for a dialog over `transport`: a browser's WebSocket names the HTTP
    /// listener with `;transport=ws`/`wss` (RFC 7118 §5); the others are [`Self::contact_uri`].
    pub fn contact_uri_for(&self, transport: sip::Transport) -> String {
        if !transport.is_websocket() {
            return self.contact_uri();
        }
        format!(
            "<sip:{}:{};transport={}>",
            self.advertise_ip_for_uri(),
            self.http_addr.port(),
            transport.as_str().to_ascii_lowercase()
        )
    }

    /// Our Contact header value. The SIP port is the bound one, known once transports are up.
    pub fn contact_uri(&self) -> String {
        format!(
            "<sip:{}:{}>",
            self.advertise_ip_for_uri(),
            self.sip_addr.port()
        )
    }
}

/// Counters read by `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub active_calls: AtomicI64,
}

/// What every call task shares.
pub struct Shared {
    pub config: NodeConfig,
    pub store: store::Store,
    /// Call-record writes, queued in order off the call set-up path.
    pub records: crate::records::RecordWriter,
    pub media: media::MediaEngine,
    pub webhooks: webhook::WebhookClient,
    pub tts: Arc<dyn tts::TtsProvider>,
    pub audio: audio::AudioCache,
    pub routing: routing::Routing,
    /// Pool numbers and open Proxy sessions (`crate::proxy`).
    pub proxy: crate::proxy::ProxyIndex,
    /// Live calls by CallSid, for API updates.
    pub calls: calls_registry::CallRegistry,
    /// The SIP task's command queue, for calls started outside it (outbound).
    pub sip: mpsc::UnboundedSender<sip_task::SipCommand>,
    /// Where the HTTP listener's SIP WebSocket connections report to the SIP task.
    pub sip_connections: mpsc::UnboundedSender<transport::StreamEvent>,
    pub metrics: Metrics,
    pub beep: Arc<[i16]>,
    /// Dialtone's default hold music, made once at start.
    pub hold_music: Arc<[i16]>,
    /// The chimes a conference plays as a participant enters and leaves.
    pub conference_beeps: (Arc<[i16]>, Arc<[i16]>),
    /// Live conference rooms.
    pub conferences: crate::conference::Conferences,
    /// Call queues and their waiting callers.
    pub queues: crate::queues::QueueRuntime,
    /// Registered SIP users' bindings and the REGISTER failure counter.
    pub registrar: crate::registrar::Registrations,
    /// The SMSC connections, when `config.smscs` names any.
    pub sms: Option<Arc<crate::sms::SmscPool>>,
    /// Incoming messages and receipts from the SMSCs, until the task that stores them takes
    /// the receiver (`Option::take`).
    pub sms_events: tokio::sync::Mutex<Option<mpsc::Receiver<crate::sms::SmsEvent>>>,
    /// Wakes the SMS outbox when the API queues a message (`crate::messaging`).
    pub outbox: crate::messaging::Outbox,
    /// Which rate table prices each account (`crate::pricing`).
    pub rates: crate::pricing::Rates,
    /// The node's capacity and what exceeds it (`crate::overload`).
    pub overload: Arc<crate::overload::Overload>,
    /// Calls deferred to their calling window, by time (`crate::quiet_hours`).
    pub scheduler: crate::quiet_hours::Scheduler,
}

impl Shared {
    /// The samples of what the engine asks to play: a fetched file (cached), speech, or one
    /// of the tones Dialtone makes itself.
    pub async fn load_source(&self, source: engine::MediaSource) -> Result<Arc<[i16]>, String> {
        match source {
            engine::MediaSource::Url(url) => self.audio.load(&url).await.map_err(|e| e.to_string()),
            engine::MediaSource::Tts {
                text,
                voice,
                language,
            } => self
                .tts
                .synthesize(&text, &voice, &language)
                .await
                .map_err(|e| e.to_string()),
            engine::MediaSource::Beep => Ok(self.beep.clone()),
            engine::MediaSource::HoldMusic => Ok(self.hold_music.clone()),
        }
    }
}

/// A running node: its bound addresses, and its tasks until dropped with the runtime.
pub struct Node {
    pub sip_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub shared: Arc<Shared>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("binding SIP on {addr}: {source}")]
    Sip {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("binding HTTP on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("starting media: {0}")]
    Media(String),
    #[error("reading numbers: {0}")]
    Store(String),
    #[error("crash recovery: {0}")]
    Recovery(String),
    #[error("SMSC configuration: {0}")]
    Sms(#[from] crate::sms::SmscConfigError),
}

impl Node {
    /// Binds every socket, loads the routing index and starts the tasks.
    pub async fn start(mut config: NodeConfig, store: store::Store) -> Result<Node, StartError> {
        let (transports, stream_events) = transport::Transports::bind(config.sip_addr)
            .await
            .map_err(|source| StartError::Sip {
                addr: config.sip_addr,
                source,
            })?;
        config.sip_addr = transports.local;
        let listener = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| StartError::Http {
                addr: config.http_addr,
                source,
            })?;
        let http_addr = listener.local_addr().map_err(|source| StartError::Http {
            addr: config.http_addr,
            source,
        })?;
        config.http_addr = http_addr;

        // Bound: no other node runs on these addresses. Close what a crashed run left open before
        // taking calls, then start this run's liveness mark.
        let recovered = crate::recovery::recover(&config, &store)
            .await
            .map_err(|e| StartError::Recovery(e.to_string()))?;
        if recovered != crate::recovery::Recovered::default() {
            tracing::warn!(
                ?recovered,
                "recovered calls and recordings left open by a crash"
            );
        }
        crate::recovery::start_heartbeat(config.data_dir.clone())
            .map_err(|e| StartError::Recovery(e.to_string()))?;

        let media = media::MediaEngine::start(media::MediaConfig {
            bind_ip: config.rtp_bind_ip,
            advertise_ip: config.advertise_ip,
            port_min: config.rtp_port_min,
            port_max: config.rtp_port_max,
            workers: config.media_workers,
        })
        .map_err(|e| StartError::Media(e.to_string()))?;
        // Loaded before the SIP task and the API start: calls route from memory from the first
        // INVITE, and no API write races the load.
        let routing = routing::Routing::default();
        let loading = std::time::Instant::now();
        let size = routing
            .load(&store)
            .await
            .map_err(|e| StartError::Store(e.to_string()))?;
        let proxy = crate::proxy::ProxyIndex::default();
        proxy
            .load(&store)
            .await
            .map_err(|e| StartError::Store(e.to_string()))?;
        tracing::info!(
            numbers = size.numbers,
            profiles = size.profiles,
            seconds = loading.elapsed().as_secs_f64(),
            "routing index loaded"
        );
        if let Err(e) = store.analyze_numbers().await {
            tracing::warn!(error = %e, "refreshing the numbers' statistics failed");
        }
        let webhooks =
            webhook::WebhookClient::new(webhook::WebhookConfig::default()).map_err(|e| {
                StartError::Http {
                    addr: config.http_addr,
                    source: std::io::Error::other(e.to_string()),
                }
            })?;
        let audio_client = audio::AudioCache::default_client().map_err(|e| StartError::Http {
            addr: config.http_addr,
            source: std::io::Error::other(e.to_string()),
        })?;
        let audio = audio::AudioCache::new(audio_client, 64 * 1024 * 1024);
        let (sms, sms_events) = if config.smscs.is_empty() {
            (None, None)
        } else {
            let (pool, events) = crate::sms::SmscPool::start(config.smscs.clone())?;
            (Some(pool), Some(events))
        };
        let nofile = crate::overload::raise_nofile_limit().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not read the open-file limit; assuming 1024");
            1024
        });
        let ports = u64::from(config.rtp_port_max.saturating_sub(config.rtp_port_min)) + 1;
        let mut capacity = crate::overload::Capacity::derive(nofile, ports);
        if let Some(max) = config.max_calls {
            capacity.max_calls = max;
        }
        tracing::info!(max_calls = capacity.max_calls, open_files = nofile, rtp_ports = ports, "call capacity");
        let (command_tx, commands) = mpsc::unbounded_channel();
        let (scheduler, scheduler_inbox) = crate::quiet_hours::Scheduler::new();
        let shared = Arc::new(Shared {
            scheduler,
            sms,
            sms_events: tokio::sync::Mutex::new(sms_events),
            outbox: crate::messaging::Outbox::default(),
            calls: calls_registry::CallRegistry::default(),
            sip: command_tx.clone(),
            sip_connections: transports.events(),
            tts: Arc::new(tts::CachedTts::new(
                tts::EspeakTts::new(tts::EspeakConfig::default()),
                32 * 1024 * 1024,
            )),
            audio,
            webhooks,
            media,
            routing,
            proxy,
            records: crate::records::RecordWriter::start(store.clone()),
            store,
            metrics: Metrics::default(),
            beep: ::media::tone::beep().into(),
            hold_music: ::media::tone::hold_music().into(),
            conference_beeps: (
                ::media::tone::conference_enter_beep().into(),
                ::media::tone::conference_exit_beep().into(),
            ),
            conferences: crate::conference::Conferences::default(),
            queues: crate::queues::QueueRuntime::default(),
            registrar: crate::registrar::Registrations::default(),
            rates: crate::pricing::Rates::new(config.pricing.clone()),
            overload: Arc::new(crate::overload::Overload::new(capacity)),
            config,
        });
        tokio::spawn(shared.overload.clone().measure_lag());

        let upcalls = sip_task::Upcalls {
            new_call: |shared, sip, new| {
                tokio::spawn(crate::call::run(shared, sip, new));
            },
            register: crate::registrar::handle_register,
            inbound_allowed: |shared, source| {
                crate::trunk::inbound_allowed(&shared.config.trunks, source)
            },
        };
        let sip = sip_task::SipTask::new(
            transports,
            stream_events,
            commands,
            command_tx.clone(),
            shared.clone(),
            upcalls,
        );
        tokio::spawn(sip.run());
        match &shared.config.http_tls {
            Some(files) => {
                let tls = crate::tls::server_config(files)
                    .and_then(|c| {
                        crate::tls::TlsListener::new(listener, c).map_err(|e| e.to_string())
                    })
                    .map_err(|e| StartError::Http {
                        addr: http_addr,
                        source: std::io::Error::other(e),
                    })?;
                tokio::spawn(http::serve_tls(tls, shared.clone()));
            }
            None => {
                tokio::spawn(http::serve(listener, shared.clone()));
            }
        }
        crate::registrar::start(shared.clone());
        crate::trunk::start(shared.clone());
        // Calls deferred by a previous run are placed by this one (recovery left them alone).
        let deferred = crate::quiet_hours::Scheduler::start(shared.clone(), scheduler_inbox)
            .await
            .map_err(|e| StartError::Store(e.to_string()))?;
        if deferred > 0 {
            tracing::info!(deferred, "scheduled calls waiting for their calling window");
        }
        crate::proxy::start_expiry(shared.clone());
        shared.proxy.start_writer(shared.store.clone());
        if let Some(pool) = shared.sms.clone() {
            if let Some(events) = shared.sms_events.lock().await.take() {
                crate::messaging::start(shared.clone(), pool, events);
            }
        }
        // Presence: an agent is busy while any live call (a dial leg included) is from or to
        // `client:NAME`.
        let calls = shared.calls.clone();
        shared.registrar.set_busy_check(move |account, user| {
            calls.has_party(account, &format!("client:{user}"))
        });
        tracing::info!(sip = %shared.config.sip_addr, http = %http_addr, "dialtone node started");
        Ok(Node {
            sip_addr: shared.config.sip_addr,
            http_addr,
            shared,
        })
    }
}
