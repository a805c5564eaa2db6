//! The in-memory index from dialled number to IncomingPhoneNumber, kept fresh by API writes.
//!
//! An INVITE must not wait on the database in the common case. The index is reloaded whole when
//! the API says numbers changed (the API does not say which: applications and accounts change
//! what numbers route to as well); a miss still asks the store, so a created number routes at once
//! and its creation needs no reload at all (`ApiHooks::number_created` is left at its default).
//!
//! Reloads are coalesced: at most one runs and at most one waits. A change made while a reload
//! runs may be missed by it, so one more follows; every change reported during that one is
//! committed before it starts, so it sees them all. Without this, a burst of creations spawned a
//! full read of every number per creation and the reads piled up (53 creations/s in the bench).
//! A reload that follows another waits [`RELOAD_SPACING`] times as long as that one took, so back
//! to back reloads (a burst of changes over many numbers) take at most a fifth of one core; a
//! lone change still reloads at once, and a created number routes through the store meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use model::records::PhoneNumberRecord;

/// How many times a reload's own duration the next queued one waits (capped at one second).
const RELOAD_SPACING: u32 = 4;

#[derive(Default, Clone)]
pub struct Routing {
    index: Arc<RwLock<HashMap<String, PhoneNumberRecord>>>,
    reloads: Arc<Mutex<ReloadState>>,
}

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
enum ReloadState {
    #[default]
    Idle,
    Running,
    /// Running, and a change arrived after it started: one more reload follows.
    RunningThenAgain,
}

/// The forms a dialled number may arrive in: as written, with or without the leading `+`.
fn candidates(dialled: &str) -> [String; 2] {
    match dialled.strip_prefix('+') {
        Some(bare) => [dialled.to_owned(), bare.to_owned()],
        None => [dialled.to_owned(), format!("+{dialled}")],
    }
}

impl Routing {
    pub async fn reload(&self, store: &store::Store) -> Result<(), store::StoreError> {
        let numbers = store.all_numbers().await?;
        let map = numbers
            .into_iter()
            .map(|n| (n.phone_number.clone(), n))
            .collect();
        // A poisoned lock only means a reader panicked mid-read; the map itself is whole.
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = map;
        Ok(())
    }

    /// Reloads the index in the background after numbers changed, coalesced with reloads already
    /// running or waiting (see the module comment). Needs a tokio runtime.
    pub fn schedule_reload(&self, store: &store::Store) {
        {
            let mut state = self.reloads.lock().unwrap_or_else(|e| e.into_inner());
            match *state {
                ReloadState::Idle => *state = ReloadState::Running,
                ReloadState::Running | ReloadState::RunningThenAgain => {
                    *state = ReloadState::RunningThenAgain;
                    return;
                }
            }
        }
        let routing = self.clone();
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                let started = tokio::time::Instant::now();
                if let Err(e) = routing.reload(&store).await {
                    tracing::error!(error = %e, "reloading the routing index failed");
                }
                let took = started.elapsed();
                {
                    let mut state = routing.reloads.lock().unwrap_or_else(|e| e.into_inner());
                    if *state == ReloadState::RunningThenAgain {
                        *state = ReloadState::Running;
                    } else {
                        *state = ReloadState::Idle;
                        return;
                    }
                }
                // Changes that arrive during this wait join the reload after it.
                let spacing = (took * RELOAD_SPACING).min(std::time::Duration::from_secs(1));
                tokio::time::sleep(spacing).await;
            }
        });
    }

    pub async fn lookup(&self, store: &store::Store, dialled: &str) -> Option<PhoneNumberRecord> {
        let keys = candidates(dialled);
        {
            let index = self.index.read().unwrap_or_else(|e| e.into_inner());
            if let Some(hit) = keys.iter().find_map(|k| index.get(k)) {
                return Some(hit.clone());
            }
        }
        for key in &keys {
            match store.number_by_phone(key).await {
                Ok(Some(n)) => return Some(n),
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "number lookup failed"),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle(routing: &Routing) -> bool {
        *routing.reloads.lock().unwrap() == ReloadState::Idle
    }

    fn number(account: model::AccountSid, phone: &str) -> PhoneNumberRecord {
        let now = chrono::Utc::now();
        PhoneNumberRecord {
            sid: model::PhoneNumberSid::generate(),
            account_sid: account,
            phone_number: phone.to_owned(),
            friendly_name: phone.to_owned(),
            voice_url: Some("http://127.0.0.1:9/voice".into()),
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
        }
    }

    fn indexed(routing: &Routing, number: &str) -> bool {
        routing.index.read().unwrap().contains_key(number)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_burst_of_changes_makes_one_reload_and_one_more_that_sees_them_all() {
        let store = store::Store::open("sqlite::memory:").await.unwrap();
        let account = model::AccountSid::generate();
        store
            .ensure_account(&account, "token", "test")
            .await
            .unwrap();
        let routing = Routing::default();
        let mut numbers = Vec::new();
        for i in 0..50 {
            let phone = format!("+1555000{i:04}");
            store.create_number(&number(account, &phone)).await.unwrap();
            // Nothing runs between these calls on this runtime: the first spawns, the rest queue.
            routing.schedule_reload(&store);
            numbers.push(phone);
        }
        assert_eq!(
            *routing.reloads.lock().unwrap(),
            ReloadState::RunningThenAgain
        );
        for _ in 0..500 {
            if idle(&routing) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(idle(&routing), "the reloads never finished");
        assert!(
            numbers.iter().all(|n| indexed(&routing, n)),
            "a number created in the burst is missing"
        );
        // And a later change starts a fresh reload.
        store
            .create_number(&number(account, "+15559999999"))
            .await
            .unwrap();
        routing.schedule_reload(&store);
        for _ in 0..500 {
            if idle(&routing) && indexed(&routing, "+15559999999") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(indexed(&routing, "+15559999999"));
    }

    #[test]
    fn both_forms_of_a_number_are_tried() {
        assert_eq!(
            candidates("+15551234567"),
            ["+15551234567".to_owned(), "15551234567".to_owned()]
        );
        assert_eq!(
            candidates("15551234567"),
            ["15551234567".to_owned(), "+15551234567".to_owned()]
        );
    }
}
