//! The Proxy index at scale (`bench/proxy.sh` runs it): writes N open sessions (two participants
//! each, one pool number) into a store through its bulk path, loads the runtime's index from it
//! as a starting node does, and measures the index's memory and the lookup of (caller, dialled
//! proxy number) for hits and misses.
//!
//!   cargo run --release -p node --example proxy_index -- sqlite:///tmp/p.db 1000000
//!
//! The index's memory is measured first, on N sessions built in memory in the fresh process (the
//! load from the store leaves the allocator holding its row buffers, which would count too).
//! Prints one `PROXY_INDEX_RESULT key=value ...` line. The account, number and service it makes
//! are the ones `bench/proxy.sh` then calls through (`ACCOUNT_SID`, `POOL_NUMBER`).

use std::time::Instant;

use chrono::Utc;
use model::{
    AccountSid, PhoneNumberRecord, PhoneNumberSid, ProxyParticipantSid, ProxyServiceSid, ProxySessionSid,
};
use node::proxy::ProxyIndex;
use rand::Rng;
use store::proxy::{ProxyParticipantRecord, ProxyServiceRecord, ProxySessionRecord};

fn rss_bytes() -> u64 {
    // statm's second field: resident pages.
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "sqlite::memory:".into());
    let count: u32 = args
        .next()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let account: AccountSid = std::env::var("ACCOUNT_SID")
        .unwrap_or_else(|_| "AC0123456789abcdef0123456789abcdef".into())
        .parse()?;
    let token =
        std::env::var("AUTH_TOKEN").unwrap_or_else(|_| "benchbenchbenchbenchbenchbench12".into());
    let pool = std::env::var("POOL_NUMBER").unwrap_or_else(|_| "+15550009000".into());

    // The index's own memory, measured first in a fresh process: N sessions built in memory.
    let index_mb = {
        let before = rss_bytes();
        let mut index = node::proxy::Index::default();
        let now = Utc::now();
        let (svc, pn) = (ProxyServiceSid::generate(), PhoneNumberSid::generate());
        for i in 0..u64::from(count) {
            let session = ProxySessionRecord {
                sid: ProxySessionSid::generate(),
                account_sid: account,
                service_sid: svc,
                unique_name: None,
                status: "open".into(),
                closed_reason: None,
                ttl: 0,
                mode: "voice-and-message".into(),
                date_expiry: None,
                date_started: None,
                date_ended: None,
                date_last_interaction: None,
                date_created: now,
                date_updated: now,
            };
            let part = |side: u64| ProxyParticipantRecord {
                sid: ProxyParticipantSid::generate(),
                account_sid: account,
                service_sid: svc,
                session_sid: session.sid,
                identifier: format!("+1{}", 2_000_000_000 + 2 * i + side),
                friendly_name: None,
                proxy_identifier: pool.clone(),
                proxy_identifier_sid: pn,
                date_created: now,
                date_updated: now,
            };
            index.put_session(&session, &[part(0), part(1)]);
        }
        let mb = rss_bytes().saturating_sub(before) as f64 / 1_048_576.0;
        eprintln!("{} sessions in memory: {mb:.0} MB", index.open_sessions());
        mb
    };

    let store = store::Store::open(&url).await?;
    store.ensure_account(&account, &token, "bench").await?;
    let now = Utc::now();
    let number = PhoneNumberRecord {
        sid: PhoneNumberSid::generate(),
        account_sid: account,
        phone_number: pool.clone(),
        friendly_name: "proxy pool".into(),
        voice_url: None,
        voice_method: "POST".into(),
        voice_fallback_url: None,
        voice_fallback_method: "POST".into(),
        status_callback: None,
        status_callback_method: "POST".into(),
        sms_url: None,
        sms_method: "POST".into(),
        sms_fallback_url: None,
        sms_fallback_method: "POST".into(),
        sms_application_sid: None,
        date_created: now,
        date_updated: now,
    };
    store.create_number(&number).await?;
    let service = ProxyServiceRecord {
        sid: ProxyServiceSid::generate(),
        account_sid: account,
        unique_name: "bench".into(),
        default_ttl: 0,
        callback_url: None,
        intercept_callback_url: None,
        out_of_session_callback_url: None,
        number_selection_behavior: "prefer-sticky".into(),
        geo_match_level: "country".into(),
        chat_instance_sid: None,
        date_created: now,
        date_updated: now,
    };
    store.create_proxy_service(&service).await?;
    let proxy = store
        .add_proxy_number(&account, &service.sid, &pool, false, now)
        .await?;

    let started = Instant::now();
    store
        .bulk_open_proxy_sessions(&service, &proxy, count, 5_000)
        .await?;
    let insert_s = started.elapsed().as_secs_f64();
    eprintln!("{count} sessions written in {insert_s:.1} s");

    let index = ProxyIndex::default();
    let started = Instant::now();
    index.load(&store).await?;
    let load_s = started.elapsed().as_secs_f64();
    let sessions = index.open_sessions();
    eprintln!("index of {sessions} sessions loaded in {load_s:.1} s");

    let lookups = 1_000_000usize;
    let mut rng = rand::thread_rng();
    let callers: Vec<String> = (0..lookups)
        .map(|_| {
            format!(
                "+1{}",
                2_000_000_000u64 + rng.gen_range(0..u64::from(count.max(1)) * 2)
            )
        })
        .collect();
    let mut hit_ns = Vec::with_capacity(lookups);
    let mut found = 0usize;
    for caller in &callers {
        let t = Instant::now();
        let route = index.route(caller, &pool);
        hit_ns.push(t.elapsed().as_nanos() as u64);
        found += usize::from(route.is_some_and(|r| r.to.is_some()));
    }
    let mut miss_ns = Vec::with_capacity(lookups);
    for caller in &callers {
        let t = Instant::now();
        let route = index.route(caller, "+15550000000");
        miss_ns.push(t.elapsed().as_nanos() as u64);
        assert!(route.is_none());
    }
    hit_ns.sort_unstable();
    miss_ns.sort_unstable();
    assert_eq!(
        found, lookups,
        "every caller is a participant of an open session"
    );
    println!(
        "PROXY_INDEX_RESULT sessions={sessions} insert_s={insert_s:.1} load_s={load_s:.1} index_mb={:.0} \
         lookups={lookups} hit_p50_ns={} hit_p99_ns={} hit_max_ns={} miss_p50_ns={} miss_p99_ns={} service={}",
        index_mb,
        percentile(&hit_ns, 0.5),
        percentile(&hit_ns, 0.99),
        hit_ns.last().copied().unwrap_or(0),
        percentile(&miss_ns, 0.5),
        percentile(&miss_ns, 0.99),
        service.sid,
    );
    Ok(())
}
