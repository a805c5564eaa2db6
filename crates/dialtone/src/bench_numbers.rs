//! `dialtone bench-numbers` (hidden): the routing index at scale, for `bench/numbers.sh`.
//!
//! `--fill N` adds N numbers to the database (one account; every number shares one VoiceUrl but
//! one in a hundred, which has its own: the classifieds case). `--measure` then reads them into a
//! fresh routing index as a start does, and prints one line:
//! `BENCH_NUMBERS numbers=.. load_s=.. rss_delta_mb=.. bytes_per_number=.. index_bytes_per_number=.. lookup_p50_ns=..
//! lookup_p99_ns=.. lookups=..`. The memory figure is the growth of the process's resident set
//! over the load, divided by the count (and again with the store closed and `malloc_trim`, which
//! hands back what the load's transient rows left in the allocator: the index alone); a lookup is `Routing::find` of a random stored number
//! (both `+` and bare forms), the record built, each timed alone (the clock read included); a
//! probe is the index hit alone (`Routing::contains`), without the record.

use std::time::Instant;

use anyhow::{Context, Result};
use model::{AccountSid, PhoneNumberRecord, PhoneNumberSid};
use rand::Rng;

/// Numbers are `+1` and ten digits from here.
const FIRST: u64 = 2_000_000_000;
const BATCH: usize = 10_000;

fn phone(i: u64) -> String {
    format!("+1{}", FIRST + i)
}

extern "C" {
    fn malloc_trim(pad: usize) -> i32;
}

fn rss_bytes() -> u64 {
    // /proc/self/statm: size resident shared ... in pages.
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

pub async fn fill(database: &str, account: &AccountSid, count: u64) -> Result<()> {
    let store = store::Store::open(database)
        .await
        .with_context(|| format!("opening {database}"))?;
    store
        .ensure_account(account, "benchbenchbenchbenchbenchbench12", "Main account")
        .await?;
    let started = Instant::now();
    let mut rng = rand::thread_rng();
    let mut i = 0;
    while i < count {
        let now = chrono::Utc::now();
        let batch: Vec<PhoneNumberRecord> = (i..(i + BATCH as u64).min(count))
            .map(|n| PhoneNumberRecord {
                sid: PhoneNumberSid::time_ordered(now.timestamp_millis() as u64, &mut rng),
                account_sid: *account,
                phone_number: phone(n),
                friendly_name: phone(n),
                voice_url: Some(if n % 100 == 0 {
                    format!("http://127.0.0.1:18288/voice?advert={n}")
                } else {
                    "http://127.0.0.1:18288/voice".to_owned()
                }),
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
            })
            .collect();
        store.create_numbers(&batch, None).await?;
        i += batch.len() as u64;
        if i % 1_000_000 == 0 {
            eprintln!(
                "bench-numbers: {i} numbers in {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    println!(
        "BENCH_FILL numbers={count} seconds={:.1}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub async fn measure(database: &str, lookups: u64) -> Result<()> {
    let store = store::Store::open(database)
        .await
        .with_context(|| format!("opening {database}"))?;
    let routing = node::routing::Routing::default();
    let before = rss_bytes();
    let started = Instant::now();
    let size = routing.load(&store).await?;
    let load_s = started.elapsed().as_secs_f64();
    let after = rss_bytes();
    // The index alone: the store closed (SQLite's page caches, up to 32 MiB a connection, are a
    // fixed cost, not one per number) and what the load's transient rows left in the
    // allocator's free lists handed back.
    store.close().await;
    drop(store);
    // SAFETY: glibc's malloc_trim only releases free heap pages; it touches no live allocation.
    unsafe { malloc_trim(0) };
    let trimmed = rss_bytes();
    let count = size.numbers.max(1) as u64;
    let mut rng = rand::thread_rng();
    let mut times: Vec<u32> = Vec::with_capacity(lookups as usize);
    let mut found = 0u64;
    let dialled: Vec<String> = (0..lookups)
        .map(|k| {
            let p = phone(rng.gen_range(0..count));
            if k % 2 == 0 {
                p
            } else {
                p[1..].to_owned()
            }
        })
        .collect();
    for d in &dialled {
        let t = Instant::now();
        let hit = routing.find(d);
        let ns = t.elapsed().as_nanos();
        found += u64::from(hit.is_some());
        times.push(u32::try_from(ns).unwrap_or(u32::MAX));
    }
    let mut probes: Vec<u32> = Vec::with_capacity(lookups as usize);
    for d in &dialled {
        let t = Instant::now();
        let hit = routing.contains(d);
        let ns = t.elapsed().as_nanos();
        assert!(hit, "{d} was found, then not");
        probes.push(u32::try_from(ns).unwrap_or(u32::MAX));
    }
    times.sort_unstable();
    probes.sort_unstable();
    let pct = |v: &[u32], p: f64| v.get(((v.len() as f64 - 1.0) * p) as usize).copied().unwrap_or(0);
    let delta = after.saturating_sub(before);
    let index = trimmed.saturating_sub(before);
    println!(
        "BENCH_NUMBERS numbers={} profiles={} load_s={load_s:.2} rss_delta_mb={} bytes_per_number={:.1} \
         index_bytes_per_number={:.1} lookup_p50_ns={} lookup_p99_ns={} probe_p50_ns={} probe_p99_ns={} \
         lookups={lookups} found={found}",
        size.numbers,
        size.profiles,
        delta / 1_000_000,
        delta as f64 / count as f64,
        index as f64 / count as f64,
        pct(&times, 0.50),
        pct(&times, 0.99),
        pct(&probes, 0.50),
        pct(&probes, 0.99),
    );
    Ok(())
}
