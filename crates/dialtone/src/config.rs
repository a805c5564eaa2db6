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
    pub external_ip: Option<String>,
    pub account_sid: Option<String>,
    pub auth_token: Option<String>,
    pub log: Option<String>,
    pub log_format: Option<String>,
    pub media_workers: Option<usize>,
    /// The outbound gateway for the simple case: `sip:host[:port][;transport=tcp]`
    /// (`DIALTONE_TRUNK`); tried after the `trunks` list.
    pub trunk: Option<String>,
    /// Outbound gateways, tried in order: the first whose prefixes match the number.
    pub trunks: Option<Vec<RawTrunk>>,
}

/// One `[[trunks]]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrunk {
    pub name: Option<String>,
    pub uri: String,
    /// Number prefixes this trunk takes (e.g. `"+1"`); none means every number.
    pub prefixes: Option<Vec<String>>,
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
        pick(&mut self.external_ip, "DIALTONE_EXTERNAL_IP");
        pick(&mut self.account_sid, "DIALTONE_ACCOUNT_SID");
        pick(&mut self.auth_token, "DIALTONE_AUTH_TOKEN");
        pick(&mut self.log, "DIALTONE_LOG");
        pick(&mut self.log_format, "DIALTONE_LOG_FORMAT");
        pick(&mut self.trunk, "DIALTONE_TRUNK");
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
        let public_url = self
            .public_url
            .unwrap_or_else(|| format!("http://{http_addr}"))
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
            let name = t.name.unwrap_or_else(|| format!("trunk{}", i + 1));
            let trunk = node::outbound::Trunk::from_uri(&name, &t.uri, t.prefixes.unwrap_or_default())
                .with_context(|| format!("trunks: {name}"))?;
            trunks.push(trunk);
        }
        if let Some(uri) = &self.trunk {
            trunks.push(node::outbound::Trunk::from_uri("default", uri, Vec::new()).context("DIALTONE_TRUNK")?);
        }
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
            },
            database_url,
            account_sid,
            auth_token: self.auth_token,
            log_filter: self.log.unwrap_or_else(|| "info".into()),
            log_format,
        })
    }
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
        assert_eq!(trunks[1].address.to_string(), "127.0.0.1:5091");
        assert!(trunks[1].prefixes.is_empty());
        let err = RawConfig { trunk: Some("127.0.0.1:5060".into()), ..Default::default() }.validate().unwrap_err();
        assert!(format!("{err:#}").contains("DIALTONE_TRUNK"), "{err:#}");
    }

    #[test]
    fn toml_file_shape() {
        let raw: RawConfig = toml::from_str("http_addr = \"127.0.0.1:1234\"\nrtp_ports = \"40000-40100\"\n").unwrap();
        let c = raw.validate().unwrap();
        assert_eq!(c.node.rtp_port_max, 40100);
        assert!(toml::from_str::<RawConfig>("htp_addr = \"x\"").is_err());
    }
}
