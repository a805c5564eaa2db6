//! Raw configuration (defaults, TOML file, environment) turned once into a validated `NodeConfig`.
//!
//! Precedence, lowest first: built-in defaults, the TOML file given with `--config`, `DIALTONE_*`
//! environment variables. Everything is checked here, at start, so the runtime never meets a bad
//! value.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The file and environment shape: every field optional, strings as a user writes them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub http_addr: Option<String>,
    pub sip_addr: Option<String>,
    pub rtp_ports: Option<String>,
    pub data_dir: Option<String>,
    pub database_url: Option<String>,
    pub public_url: Option<String>,
    /// The agent console's CRM link, e.g. `https://crm.example.com/customers/{CustomerId}`.
    pub console_crm_url: Option<String>,
    /// PEM certificate chain and private key: the HTTP listener serves HTTPS and `wss://`.
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub external_ip: Option<String>,
    pub account_sid: Option<String>,
    pub auth_token: Option<String>,
    pub log: Option<String>,
    pub log_format: Option<String>,
    pub media_workers: Option<usize>,
    /// The outbound gateway for the simple case: `sip:host[:port][;transport=tcp]`
    /// (`DIALTONE_TRUNK`; several, comma-separated, are failover gateways); tried after the
    /// `trunks` list.
    pub trunk: Option<String>,
    /// Digest credentials of the simple-case trunk (`DIALTONE_TRUNK_USERNAME`, `..._PASSWORD`).
    pub trunk_username: Option<String>,
    pub trunk_password: Option<String>,
    /// REGISTER the simple-case trunk with the carrier (`DIALTONE_TRUNK_REGISTER=true`).
    pub trunk_register: Option<bool>,
    /// Outbound gateways, tried in order: the first whose prefixes match the number.
    pub trunks: Option<Vec<RawTrunk>>,
    /// Limits against toll fraud.
    pub fraud: Option<RawFraud>,
    /// The rates calls are priced at (`[pricing]`); none: calls stay unpriced.
    pub pricing: Option<RawPricing>,
    /// SMS centres to bind to over SMPP (`[[smsc]]` tables); none: no SMS.
    pub smsc: Option<Vec<RawSmsc>>,
    /// One more SMSC for the simple case, `smpp://system_id:password@host[:port]`
    /// (`DIALTONE_SMSC`): a transceiver for every number, after the `[[smsc]]` tables.
    pub smsc_url: Option<String>,
}

/// One `[[smsc]]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmsc {
    pub name: Option<String>,
    pub host: Option<String>,
    /// Default 2775.
    pub port: Option<u16>,
    pub system_id: Option<String>,
    pub password: Option<String>,
    /// Default empty.
    pub system_type: Option<String>,
    /// `transceiver` (default), `transmitter` or `receiver`.
    pub bind: Option<String>,
    /// Connections kept bound at once (default 1).
    pub binds: Option<usize>,
    /// submit_sm per second across the binds (default: no cap).
    pub tps: Option<u32>,
    /// submit_sm awaiting a response, per bind (default 10).
    pub window: Option<usize>,
    /// Destination prefixes this SMSC carries (e.g. `["+1", "+33"]`); none: every number.
    pub prefixes: Option<Vec<String>>,
    /// TON/NPI of numbers (default 1/1: international E.164, sent without `+`).
    pub source_ton: Option<u8>,
    pub source_npi: Option<u8>,
    pub dest_ton: Option<u8>,
    pub dest_npi: Option<u8>,
    /// Seconds without traffic before an enquire_link (default 30).
    pub enquire_link_s: Option<u64>,
    /// The longest wait between reconnects, in seconds (default 30).
    pub reconnect_max_s: Option<u64>,
}

/// One `[[trunks]]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrunk {
    pub name: Option<String>,
    /// The first gateway, `sip:host[:port][;transport=tcp]`.
    pub uri: Option<String>,
    /// Gateways tried after `uri`, in order (failover on 5xx, 408 or silence).
    pub gateways: Option<Vec<String>>,
    /// Number prefixes this trunk takes (e.g. `"+1"`); none means every number.
    pub prefixes: Option<Vec<String>>,
    /// Digest credentials for the carrier's 401/407.
    pub username: Option<String>,
    pub password: Option<String>,
    /// Answer only challenges of this realm.
    pub realm: Option<String>,
    /// REGISTER to the carrier (needs username and password).
    pub register: Option<bool>,
    pub register_expires: Option<u32>,
    pub register_retry_secs: Option<u64>,
    /// New calls per second through this trunk; more wait their turn.
    pub calls_per_second: Option<f64>,
    /// Seconds a gateway has to send a first response before the next one is tried.
    pub failover_timeout_secs: Option<f64>,
    /// Addresses or networks inbound INVITEs are accepted from. When no trunk sets it, INVITEs
    /// are accepted from anywhere; once one does, only from these, the trunks' gateways and
    /// registered users.
    pub inbound_acl: Option<Vec<String>>,
}

/// The `[pricing]` table: prices are decimal strings in the account's currency (USD).
///
/// ```toml
/// [pricing]
/// rounding = "per-minute"                  # or "per-second"
/// inbound = { local = "0.01", toll-free = "0.022" }      # per minute, by number type
/// outbound = { "+1" = "0.013", "+44" = "0.03" }         # per minute, longest prefix wins
/// sms_inbound = "0.0079"                   # per segment
/// sms_outbound = { "+1" = "0.0079" }       # per segment, longest prefix wins
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPricing {
    pub rounding: Option<billing::Rounding>,
    pub inbound: Option<std::collections::BTreeMap<billing::NumberType, String>>,
    pub outbound: Option<std::collections::BTreeMap<String, String>>,
    pub sms_inbound: Option<String>,
    pub sms_outbound: Option<std::collections::BTreeMap<String, String>>,
}

fn build_pricing(raw: RawPricing) -> Result<billing::RateTable> {
    let prefixes = |rates: Option<std::collections::BTreeMap<String, String>>, what: &str| {
        let rates = rates.unwrap_or_default();
        billing::PrefixRates::new(rates.iter().map(|(p, r)| (p.as_str(), r.as_str()))).with_context(|| what.to_owned())
    };
    let price = |text: &str, what: &str| -> Result<billing::Decimal> {
        match text.trim().parse::<billing::Decimal>() {
            Ok(d) if !d.is_sign_negative() => Ok(d),
            _ => bail!("{what}: {text:?} is not a decimal of at least 0"),
        }
    };
    let mut inbound = std::collections::HashMap::new();
    for (kind, rate) in raw.inbound.unwrap_or_default() {
        inbound.insert(kind, price(&rate, "inbound")?);
    }
    Ok(billing::RateTable {
        rounding: raw.rounding.unwrap_or_default(),
        inbound,
        outbound: prefixes(raw.outbound, "outbound")?,
        sms_inbound: raw.sms_inbound.as_deref().map(|r| price(r, "sms_inbound")).transpose()?,
        sms_outbound: prefixes(raw.sms_outbound, "sms_outbound")?,
    })
}

/// The `[fraud]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFraud {
    /// API-created calls per second per account (default 10); more wait in `queued`.
    pub calls_per_second: Option<f64>,
    /// Destination number prefixes every account may call; absent allows all.
    pub allowed_prefixes: Option<Vec<String>>,
    pub accounts: Option<Vec<RawAccountLimits>>,
}

/// One `[[fraud.accounts]]` table: overrides for one account.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccountLimits {
    pub account_sid: String,
    pub calls_per_second: Option<f64>,
    pub allowed_prefixes: Option<Vec<String>>,
}

impl RawConfig {
    pub fn from_file(path: &Path) -> Result<RawConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }

    /// Overlays `DIALTONE_*` variables read through `var` (the process environment in `main`).
    pub fn overlay_env(mut self, var: impl Fn(&str) -> Option<String>) -> RawConfig {
        let pick = |slot: &mut Option<String>, name: &str| {
            if let Some(v) = var(name).filter(|v| !v.is_empty()) {
                *slot = Some(v);
            }
        };
        pick(&mut self.http_addr, "DIALTONE_HTTP_ADDR");
        pick(&mut self.sip_addr, "DIALTONE_SIP_ADDR");
        pick(&mut self.rtp_ports, "DIALTONE_RTP_PORTS");
        pick(&mut self.data_dir, "DIALTONE_DATA_DIR");
        pick(&mut self.database_url, "DIALTONE_DATABASE_URL");
        pick(&mut self.public_url, "DIALTONE_PUBLIC_URL");
        pick(&mut self.console_crm_url, "DIALTONE_CONSOLE_CRM_URL");
        pick(&mut self.tls_cert, "DIALTONE_TLS_CERT");
        pick(&mut self.tls_key, "DIALTONE_TLS_KEY");
        pick(&mut self.external_ip, "DIALTONE_EXTERNAL_IP");
        pick(&mut self.account_sid, "DIALTONE_ACCOUNT_SID");
        pick(&mut self.auth_token, "DIALTONE_AUTH_TOKEN");
        pick(&mut self.log, "DIALTONE_LOG");
        pick(&mut self.log_format, "DIALTONE_LOG_FORMAT");
        pick(&mut self.trunk, "DIALTONE_TRUNK");
        pick(&mut self.smsc_url, "DIALTONE_SMSC");
        pick(&mut self.trunk_username, "DIALTONE_TRUNK_USERNAME");
        pick(&mut self.trunk_password, "DIALTONE_TRUNK_PASSWORD");
        if let Some(v) = var("DIALTONE_TRUNK_REGISTER").filter(|v| !v.is_empty()) {
            self.trunk_register = Some(matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"));
        }
        if let Some(v) = var("DIALTONE_CALLS_PER_SECOND").filter(|v| !v.is_empty()) {
            // A bad number is reported by `validate`, not dropped here.
            self.fraud.get_or_insert_with(RawFraud::default).calls_per_second = Some(v.parse().unwrap_or(f64::NAN));
        }
        if let Some(v) = var("DIALTONE_ALLOWED_PREFIXES").filter(|v| !v.is_empty()) {
            let prefixes = v.split(',').map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect();
            self.fraud.get_or_insert_with(RawFraud::default).allowed_prefixes = Some(prefixes);
        }
        if let Some(n) = var("DIALTONE_MEDIA_WORKERS").and_then(|v| v.parse().ok()) {
            self.media_workers = Some(n);
        }
        self
    }
}

/// How the log is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub node: node::NodeConfig,
    pub database_url: String,
    pub account_sid: Option<model::AccountSid>,
    pub auth_token: Option<String>,
    pub log_filter: String,
    pub log_format: LogFormat,
    /// The toll-fraud policy; `validate` already installed it process-wide (`node::fraud`),
    /// so the binary itself does not read it again.
    #[allow(dead_code)]
    pub fraud: node::fraud::Policy,
}

impl RawConfig {
    pub fn validate(self) -> Result<Config> {
        let http_addr: SocketAddr = parse_addr(self.http_addr.as_deref(), "127.0.0.1:8080", "http_addr")?;
        let sip_addr: SocketAddr = parse_addr(self.sip_addr.as_deref(), "0.0.0.0:5060", "sip_addr")?;
        let (port_min, port_max) = parse_ports(self.rtp_ports.as_deref().unwrap_or("20000-29999"))?;
        let data_dir = PathBuf::from(self.data_dir.unwrap_or_else(|| "./data".into()));
        let database_url = self.database_url.unwrap_or_else(|| {
            format!("sqlite://{}", data_dir.join("dialtone.db").display())
        });
        let external_ip: IpAddr = match self.external_ip.as_deref() {
            Some(ip) => ip.parse().with_context(|| format!("external_ip: {ip:?} is not an IP address"))?,
            None if !sip_addr.ip().is_unspecified() => sip_addr.ip(),
            None => primary_ip(),
        };
        let http_tls = match (self.tls_cert.as_deref(), self.tls_key.as_deref()) {
            (Some(cert), Some(key)) => {
                let files = node::tls::TlsFiles { cert: cert.into(), key: key.into() };
                node::tls::check(&files).map_err(anyhow::Error::msg).context("tls_cert/tls_key")?;
                Some(files)
            }
            (None, None) => None,
            _ => bail!("tls_cert and tls_key go together: set both or neither"),
        };
        let scheme = if http_tls.is_some() { "https" } else { "http" };
        let public_url = self
            .public_url
            .unwrap_or_else(|| format!("{scheme}://{http_addr}"))
            .trim_end_matches('/')
            .to_owned();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            bail!("public_url must start with http:// or https://, got {public_url:?}");
        }
        let account_sid = match self.account_sid.as_deref() {
            Some(s) => Some(s.parse().with_context(|| format!("DIALTONE_ACCOUNT_SID {s:?}"))?),
            None => None,
        };
        if account_sid.is_some() != self.auth_token.is_some() {
            bail!("DIALTONE_ACCOUNT_SID and DIALTONE_AUTH_TOKEN go together: set both or neither");
        }
        if let Some(token) = &self.auth_token {
            if token.len() < 16 {
                bail!("DIALTONE_AUTH_TOKEN must be at least 16 characters");
            }
        }
        let log_format = match self.log_format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => bail!("log_format must be text or json, got {other:?}"),
        };
        let media_workers = self
            .media_workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let mut trunks = Vec::new();
        for (i, t) in self.trunks.unwrap_or_default().into_iter().enumerate() {
            let name = t.name.clone().unwrap_or_else(|| format!("trunk{}", i + 1));
            trunks.push(build_trunk(&name, t).with_context(|| format!("trunks: {name}"))?);
        }
        if let Some(uri) = &self.trunk {
            let mut gateways = uri.split(',').map(|g| g.trim().to_owned()).filter(|g| !g.is_empty());
            let raw = RawTrunk {
                uri: gateways.next(),
                gateways: Some(gateways.collect()),
                username: self.trunk_username.clone(),
                password: self.trunk_password.clone(),
                register: self.trunk_register,
                ..RawTrunk::default()
            };
            trunks.push(build_trunk("default", raw).context("DIALTONE_TRUNK")?);
        }
        let mut smscs = Vec::new();
        for (i, raw) in self.smsc.unwrap_or_default().into_iter().enumerate() {
            let name = raw.name.clone().unwrap_or_else(|| format!("smsc{}", i + 1));
            smscs.push(build_smsc(&name, raw).with_context(|| format!("smsc: {name}"))?);
        }
        if let Some(url) = &self.smsc_url {
            smscs.push(build_smsc("default", smsc_from_url(url)?).context("DIALTONE_SMSC")?);
        }
        node::sms::check(&smscs).context("smsc")?;
        let pricing = self.pricing.map(build_pricing).transpose().context("pricing")?.map(std::sync::Arc::new);
        let fraud = build_fraud(self.fraud.unwrap_or_default()).context("fraud")?;
        // The fraud policy is process-wide: installed here, once, at start.
        node::fraud::configure(fraud.clone());
        let rtp_bind_ip = if sip_addr.ip().is_loopback() { sip_addr.ip() } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) };
        Ok(Config {
            node: node::NodeConfig {
                http_addr,
                sip_addr,
                advertise_ip: external_ip,
                rtp_bind_ip,
                rtp_port_min: port_min,
                rtp_port_max: port_max,
                recordings_dir: data_dir.join("recordings"),
                data_dir,
                public_url,
                media_workers,
                trunks,
                console_crm_url: self.console_crm_url.filter(|u| !u.trim().is_empty()),
                http_tls,
                smscs,
                pricing,
            },
            database_url,
            account_sid,
            auth_token: self.auth_token,
            log_filter: self.log.unwrap_or_else(|| "info".into()),
            log_format,
            fraud,
        })
    }
}

fn build_trunk(name: &str, t: RawTrunk) -> Result<node::trunk::Trunk> {
    let first = t.uri.as_deref().context("uri: a trunk needs at least one gateway")?;
    let mut trunk = node::trunk::Trunk::from_uri(name, first, t.prefixes.unwrap_or_default())?;
    for g in t.gateways.unwrap_or_default() {
        trunk = trunk.with_gateway(&g)?;
    }
    match (&t.username, &t.password) {
        (Some(u), Some(p)) => trunk = trunk.with_credentials(u, p, t.realm.as_deref()),
        (None, None) => {}
        _ => bail!("username and password go together"),
    }
    if t.register.unwrap_or(false) {
        let retry = t.register_retry_secs.map_or(node::trunk::DEFAULT_REGISTER_RETRY, std::time::Duration::from_secs);
        trunk = trunk.with_register(t.register_expires.unwrap_or(node::trunk::DEFAULT_REGISTER_EXPIRES), retry)?;
    }
    if let Some(rate) = t.calls_per_second {
        trunk = trunk.with_calls_per_second(rate)?;
    }
    if let Some(secs) = t.failover_timeout_secs {
        if !(secs > 0.0 && secs.is_finite()) {
            bail!("failover_timeout_secs must be above 0, got {secs}");
        }
        trunk = trunk.with_gateway_timeout(std::time::Duration::from_secs_f64(secs));
    }
    if let Some(acl) = &t.inbound_acl {
        trunk = trunk.with_inbound_acl(acl)?;
    }
    Ok(trunk)
}

fn build_smsc(name: &str, raw: RawSmsc) -> Result<node::sms::SmscConfig> {
    let host = raw.host.filter(|h| !h.trim().is_empty()).context("host is required")?;
    let system_id = raw.system_id.filter(|s| !s.is_empty()).context("system_id is required")?;
    let password = raw.password.unwrap_or_default();
    let port = raw.port.unwrap_or(node::sms::DEFAULT_PORT);
    let mut c = node::sms::SmscConfig::new(name, &host, port, &system_id, &password);
    if let Some(t) = raw.system_type {
        c.system_type = t;
    }
    c.bind = match raw.bind.as_deref().unwrap_or("transceiver") {
        "transceiver" => node::sms::BindMode::Transceiver,
        "transmitter" => node::sms::BindMode::Transmitter,
        "receiver" => node::sms::BindMode::Receiver,
        other => bail!("bind must be transceiver, transmitter or receiver, got {other:?}"),
    };
    c.binds = raw.binds.unwrap_or(1);
    c.tps = raw.tps;
    if c.tps == Some(0) {
        bail!("tps must be at least 1 (leave it out for no cap)");
    }
    c.window = raw.window.unwrap_or(c.window);
    c.prefixes = raw.prefixes.unwrap_or_default();
    if let Some(p) = c.prefixes.iter().find(|p| !p.starts_with('+') || p.len() < 2) {
        bail!("prefixes are E.164 starts like \"+1\", got {p:?}");
    }
    c.source_ton = raw.source_ton.unwrap_or(c.source_ton);
    c.source_npi = raw.source_npi.unwrap_or(c.source_npi);
    c.dest_ton = raw.dest_ton.unwrap_or(c.dest_ton);
    c.dest_npi = raw.dest_npi.unwrap_or(c.dest_npi);
    if let Some(s) = raw.enquire_link_s {
        if s == 0 {
            bail!("enquire_link_s must be at least 1");
        }
        c.enquire_link = std::time::Duration::from_secs(s);
    }
    if let Some(s) = raw.reconnect_max_s {
        c.reconnect_max = std::time::Duration::from_secs(s.max(1));
    }
    Ok(c)
}

/// `smpp://system_id:password@host[:port]`.
fn smsc_from_url(url: &str) -> Result<RawSmsc> {
    let shape = || format!("DIALTONE_SMSC: {url:?} is not like smpp://system_id:password@host:2775");
    let rest = url.strip_prefix("smpp://").with_context(shape)?;
    let (user, hostport) = rest.trim_end_matches('/').rsplit_once('@').with_context(shape)?;
    let (system_id, password) = user.split_once(':').unwrap_or((user, ""));
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse::<u16>().with_context(shape)?)),
        None => (hostport, None),
    };
    Ok(RawSmsc {
        host: Some(host.to_owned()),
        port,
        system_id: Some(system_id.to_owned()),
        password: Some(password.to_owned()),
        ..RawSmsc::default()
    })
}

fn build_fraud(raw: RawFraud) -> Result<node::fraud::Policy> {
    let rate = |r: f64| -> Result<f64> {
        if r > 0.0 && r.is_finite() {
            Ok(r)
        } else {
            bail!("calls_per_second must be a number above 0, got {r}")
        }
    };
    let mut policy = node::fraud::Policy {
        calls_per_second: rate(raw.calls_per_second.unwrap_or(node::fraud::DEFAULT_CALLS_PER_SECOND))?,
        allowed_prefixes: raw.allowed_prefixes,
        ..node::fraud::Policy::default()
    };
    for a in raw.accounts.unwrap_or_default() {
        let sid: model::AccountSid =
            a.account_sid.parse().with_context(|| format!("accounts: {:?} is not an account SID", a.account_sid))?;
        let limits = node::fraud::AccountLimits {
            calls_per_second: a.calls_per_second.map(rate).transpose()?,
            allowed_prefixes: a.allowed_prefixes,
        };
        policy.accounts.insert(sid, limits);
    }
    Ok(policy)
}

fn parse_addr(raw: Option<&str>, default: &str, what: &str) -> Result<SocketAddr> {
    let raw = raw.unwrap_or(default);
    raw.parse().with_context(|| format!("{what}: {raw:?} is not an address like {default}"))
}

fn parse_ports(raw: &str) -> Result<(u16, u16)> {
    let (lo, hi) = raw
        .split_once('-')
        .with_context(|| format!("rtp_ports: {raw:?} is not a range like 20000-29999"))?;
    let lo: u16 = lo.trim().parse().with_context(|| format!("rtp_ports: bad start {lo:?}"))?;
    let hi: u16 = hi.trim().parse().with_context(|| format!("rtp_ports: bad end {hi:?}"))?;
    if lo < 1024 || hi <= lo || (hi - lo) < 3 {
        bail!("rtp_ports: {raw:?} must be a range of at least 4 ports above 1023");
    }
    Ok((lo, hi))
}

/// The address this host would use to reach the outside, found without sending anything:
/// `connect` on a UDP socket only picks a route. Falls back to loopback on a machine without one.
fn primary_ip() -> IpAddr {
    UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").map(|()| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn defaults_run() {
        let c = RawConfig::default().validate().unwrap();
        assert_eq!(c.node.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.node.sip_addr.to_string(), "0.0.0.0:5060");
        assert_eq!((c.node.rtp_port_min, c.node.rtp_port_max), (20000, 29999));
        assert_eq!(c.database_url, "sqlite://./data/dialtone.db");
        assert_eq!(c.node.public_url, "http://127.0.0.1:8080");
    }

    #[test]
    fn environment_overrides_file() {
        let raw = RawConfig { http_addr: Some("127.0.0.1:9000".into()), ..Default::default() };
        let c = raw
            .overlay_env(env(&[("DIALTONE_HTTP_ADDR", "127.0.0.1:9100"), ("DIALTONE_SIP_ADDR", "127.0.0.1:5070")]))
            .validate()
            .unwrap();
        assert_eq!(c.node.http_addr.to_string(), "127.0.0.1:9100");
        assert_eq!(c.node.advertise_ip.to_string(), "127.0.0.1");
    }

    #[test]
    fn bad_values_are_refused_with_their_name() {
        let err = RawConfig { rtp_ports: Some("30000".into()), ..Default::default() }.validate().unwrap_err();
        assert!(err.to_string().contains("rtp_ports"), "{err}");
        let err = RawConfig { account_sid: Some("AC00".into()), auth_token: Some("x".repeat(32)), ..Default::default() }
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("DIALTONE_ACCOUNT_SID"), "{err}");
        let err = RawConfig { auth_token: Some("x".repeat(32)), ..Default::default() }.validate().unwrap_err();
        assert!(err.to_string().contains("go together"), "{err}");
    }

    #[test]
    fn trunks_from_the_file_and_the_environment() {
        let raw: RawConfig = toml::from_str(
            "[[trunks]]\nname = \"us\"\nuri = \"sip:127.0.0.1:5090;transport=tcp\"\nprefixes = [\"+1\"]\n",
        )
        .unwrap();
        let c = raw.overlay_env(env(&[("DIALTONE_TRUNK", "sip:127.0.0.1:5091")])).validate().unwrap();
        let trunks = &c.node.trunks;
        assert_eq!(trunks.len(), 2);
        assert_eq!((trunks[0].name.as_str(), trunks[0].prefixes.as_slice()), ("us", ["+1".to_owned()].as_slice()));
        assert_eq!(trunks[1].address().unwrap().to_string(), "127.0.0.1:5091");
        assert!(trunks[1].prefixes.is_empty());
        let err = RawConfig { trunk: Some("127.0.0.1:5060".into()), ..Default::default() }.validate().unwrap_err();
        assert!(format!("{err:#}").contains("DIALTONE_TRUNK"), "{err:#}");
    }

    #[test]
    fn a_full_trunk_table() {
        let raw: RawConfig = toml::from_str(
            r#"
            [[trunks]]
            name = "carrier"
            uri = "sip:127.0.0.1:5090"
            gateways = ["sip:127.0.0.1:5092", "sip:127.0.0.1:5094;transport=tcp"]
            username = "acme"
            password = "s3cret"
            realm = "carrier.example"
            register = true
            register_expires = 600
            calls_per_second = 5
            failover_timeout_secs = 1.5
            inbound_acl = ["192.0.2.0/24", "198.51.100.7"]
            "#,
        )
        .unwrap();
        let c = raw.validate().unwrap();
        let t = &c.node.trunks[0];
        assert_eq!(t.gateways.len(), 3);
        assert_eq!(format!("{:?}", t.gateways[2].transport), "Tcp");
        let creds = t.credentials.as_ref().unwrap();
        assert_eq!((creds.username.as_str(), creds.password.as_str(), creds.realm.as_deref()), ("acme", "s3cret", Some("carrier.example")));
        assert_eq!(t.register.as_ref().map(|r| r.expires), Some(600));
        assert_eq!(t.calls_per_second, Some(5.0));
        assert_eq!(t.gateway_timeout, std::time::Duration::from_millis(1500));
        assert_eq!(t.inbound_acl.as_ref().map(Vec::len), Some(2));

        let bad = |text: &str| toml::from_str::<RawConfig>(text).unwrap().validate().map(|_| ()).unwrap_err();
        let err = bad("[[trunks]]\nuri = \"sip:127.0.0.1:5090\"\nregister = true\n");
        assert!(format!("{err:#}").contains("credentials"), "{err:#}");
        let err = bad("[[trunks]]\nuri = \"sip:127.0.0.1:5090\"\nusername = \"u\"\n");
        assert!(format!("{err:#}").contains("go together"), "{err:#}");
        let err = bad("[[trunks]]\nuri = \"sip:127.0.0.1:5090\"\ninbound_acl = [\"10.0.0.0/40\"]\n");
        assert!(format!("{err:#}").contains("10.0.0.0/40"), "{err:#}");
        let err = bad("[[trunks]]\nname = \"x\"\n");
        assert!(format!("{err:#}").contains("gateway"), "{err:#}");
    }

    #[test]
    fn simple_trunk_with_failover_and_credentials_from_the_environment() {
        let c = RawConfig::default()
            .overlay_env(env(&[
                ("DIALTONE_TRUNK", "sip:127.0.0.1:5091, sip:127.0.0.1:5093"),
                ("DIALTONE_TRUNK_USERNAME", "u"),
                ("DIALTONE_TRUNK_PASSWORD", "p"),
                ("DIALTONE_TRUNK_REGISTER", "true"),
            ]))
            .validate()
            .unwrap();
        let t = &c.node.trunks[0];
        assert_eq!(t.gateways.iter().map(|g| g.address.port()).collect::<Vec<_>>(), [5091, 5093]);
        assert_eq!(t.credentials.as_ref().map(|c| c.username.as_str()), Some("u"));
        assert!(t.register.is_some());
    }

    #[test]
    fn fraud_limits_from_the_file_and_the_environment() {
        let account = model::AccountSid::generate();
        let raw: RawConfig = toml::from_str(&format!(
            "[fraud]\ncalls_per_second = 2\nallowed_prefixes = [\"+1\"]\n[[fraud.accounts]]\naccount_sid = \"{account}\"\nallowed_prefixes = [\"+44\"]\n"
        ))
        .unwrap();
        let c = raw.validate().unwrap();
        assert_eq!(c.fraud.calls_per_second, 2.0);
        assert!(c.fraud.check_destination(&account, "+15550001111").is_err());
        assert!(c.fraud.check_destination(&account, "+447700900000").is_ok());
        assert!(c.fraud.check_destination(&model::AccountSid::generate(), "+15550001111").is_ok());

        let c = RawConfig::default()
            .overlay_env(env(&[("DIALTONE_CALLS_PER_SECOND", "1"), ("DIALTONE_ALLOWED_PREFIXES", "+33, +49")]))
            .validate()
            .unwrap();
        assert_eq!(c.fraud.calls_per_second, 1.0);
        assert_eq!(c.fraud.allowed_prefixes, Some(vec!["+33".to_owned(), "+49".to_owned()]));
        let err = RawConfig::default().overlay_env(env(&[("DIALTONE_CALLS_PER_SECOND", "fast")])).validate().unwrap_err();
        assert!(format!("{err:#}").contains("calls_per_second"), "{err:#}");
        assert_eq!(RawConfig::default().validate().unwrap().fraud, node::fraud::Policy::default());
    }

    #[test]
    fn pricing_table() {
        let raw: RawConfig = toml::from_str(
            r#"
            [pricing]
            rounding = "per-second"
            inbound = { local = "0.01", toll-free = "0.022" }
            outbound = { "+1" = "0.013", "+1555" = "0.05" }
            sms_inbound = "0.0079"
            sms_outbound = { "" = "0.04" }
            "#,
        )
        .unwrap();
        let c = raw.validate().unwrap();
        let t = c.node.pricing.expect("a rate table");
        assert_eq!(t.rounding, billing::Rounding::PerSecond);
        let price = |seconds| t.call_price(billing::Direction::Outbound("+15550001234"), seconds).unwrap().to_string();
        assert_eq!(price(65), "0.0542");
        assert_eq!(t.inbound[&billing::NumberType::TollFree].to_string(), "0.022");
        assert_eq!(t.sms_outbound.rate("+33612345678").unwrap().to_string(), "0.04");
        assert!(RawConfig::default().validate().unwrap().node.pricing.is_none(), "unpriced by default");

        let bad = |text: &str| format!("{:#}", toml::from_str::<RawConfig>(text).unwrap().validate().map(|_| ()).unwrap_err());
        assert!(bad("[pricing]\noutbound = { \"+1\" = \"-1\" }").contains("not a decimal of at least 0"));
        assert!(bad("[pricing]\noutbound = { \"+1x\" = \"1\" }").contains("digits only"));
        assert!(bad("[pricing]\ninbound = { local = \"free\" }").contains("inbound"));
        assert!(toml::from_str::<RawConfig>("[pricing]\nrounding = \"hourly\"").is_err());
    }

    #[test]
    fn smsc_tables() {
        let raw: RawConfig = toml::from_str(
            r#"
            [[smsc]]
            name = "carrier"
            host = "127.0.0.1"
            system_id = "dialtone"
            password = "pw"
            binds = 2
            tps = 20
            prefixes = ["+1", "+33"]
            enquire_link_s = 15

            [[smsc]]
            host = "smsc.example"
            port = 2776
            system_id = "rx"
            bind = "receiver"
            "#,
        )
        .unwrap();
        let c = raw.validate().unwrap();
        let [a, b] = c.node.smscs.as_slice() else { panic!("{:?}", c.node.smscs) };
        assert_eq!((a.name.as_str(), a.port, a.binds, a.tps, a.window), ("carrier", 2775, 2, Some(20), 10));
        assert_eq!(a.prefixes, ["+1", "+33"]);
        assert_eq!(a.enquire_link, std::time::Duration::from_secs(15));
        assert_eq!((a.source_ton, a.source_npi, a.dest_ton, a.dest_npi), (1, 1, 1, 1));
        assert_eq!((b.name.as_str(), b.port, b.bind), ("smsc2", 2776, node::sms::BindMode::Receiver));
        assert!(RawConfig::default().validate().unwrap().node.smscs.is_empty());

        let bad = |text: &str| format!("{:#}", toml::from_str::<RawConfig>(text).unwrap().validate().map(|_| ()).unwrap_err());
        let one = "[[smsc]]\nname = \"a\"\nhost = \"h\"\nsystem_id = \"s\"\n";
        assert!(bad(&format!("{one}{one}")).contains("two SMSCs are named \"a\""));
        assert!(bad(&format!("{one}port = 0\n")).contains("port"));
        assert!(bad(&format!("{one}binds = 0\n")).contains("binds"));
        assert!(bad(&format!("{one}bind = \"both\"\n")).contains("transceiver"));
        assert!(bad(&format!("{one}prefixes = [\"1\"]\n")).contains("prefixes"));
        assert!(bad("[[smsc]]\nhost = \"h\"\n").contains("system_id"));

        let c = RawConfig::default()
            .overlay_env(env(&[("DIALTONE_SMSC", "smpp://dialtone:s3cret@127.0.0.1:2776")]))
            .validate()
            .unwrap();
        let s = &c.node.smscs[0];
        assert_eq!((s.name.as_str(), s.host.as_str(), s.port, s.system_id.as_str(), s.password.as_str()), ("default", "127.0.0.1", 2776, "dialtone", "s3cret"));
        let err = RawConfig::default().overlay_env(env(&[("DIALTONE_SMSC", "127.0.0.1:2775")])).validate().unwrap_err();
        assert!(format!("{err:#}").contains("DIALTONE_SMSC"), "{err:#}");
    }

    #[test]
    fn toml_file_shape() {
        let raw: RawConfig = toml::from_str("http_addr = \"127.0.0.1:1234\"\nrtp_ports = \"40000-40100\"\n").unwrap();
        let c = raw.validate().unwrap();
        assert_eq!(c.node.rtp_port_max, 40100);
        assert!(toml::from_str::<RawConfig>("htp_addr = \"x\"").is_err());
    }
}
