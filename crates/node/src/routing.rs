//! The in-memory index from dialled number to where its calls go, kept current by API writes.
//!
//! An INVITE must not wait on the database, and one node holds millions of numbers (classifieds
//! sites give every advert its own), so each number costs a small fixed-size entry:
//! - the key is the number's digits packed in a `u64` ([`key`]): `+15551234567` and
//!   `15551234567` are one key;
//! - the entry holds the number's SID as 16 bytes, its account as an interned `u32` and its
//!   routing *profile* as an interned `u32`. A profile is every URL, method and application SID
//!   the number routes by; numbers with the same settings share one (the classifieds case: one
//!   webhook for all, the application reads `To`), and distinct URLs cost their length once.
//!
//! Applications are held beside the numbers (SID -> account and URLs), and a profile names them:
//! a lookup resolves a number's application then, so changing an application is one write here
//! and touches no number.
//!
//! Writes come from the API ([`api::ApiHooks`]: a number created, updated or deleted, an
//! application saved or deleted) and change the index in place before the API answers, so a
//! deleted number stops routing at once. The whole index is read once, at start
//! ([`Routing::load`]), in pages by key; there is no reload after that. Until the load finishes a
//! lookup asks the store (the node does not start its SIP task before the load ends, so calls do
//! not normally see this).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use hashbrown::HashMap;
use model::records::{ApplicationRecord, PhoneNumberRecord};
use model::{AccountSid, ApplicationSid, PhoneNumberSid};
use store::NumberRoute;

/// Rows per page of the start-up load.
const LOAD_PAGE: u32 = 20_000;

/// Digits packed below this bit; the digit count sits above it, so `0123` and `123` differ.
const LENGTH_SHIFT: u32 = 50;

/// The index key of a dialled number: its digits (after an optional `+`, at most 15, as E.164
/// allows) as an integer, tagged with how many there are. `None` for anything else, which no
/// number can match.
pub fn key(dialled: &str) -> Option<u64> {
    let digits = dialled.strip_prefix('+').unwrap_or(dialled).as_bytes();
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let mut value = 0u64;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u64::from(b - b'0');
    }
    // 15 digits are below 10^15 < 2^50.
    Some(value | (digits.len() as u64) << LENGTH_SHIFT)
}

/// The E.164 form (`+` and the digits) of a key made by [`key`].
fn phone_number(key: u64) -> String {
    let len = (key >> LENGTH_SHIFT) as usize;
    let value = key & ((1 << LENGTH_SHIFT) - 1);
    format!("+{value:0len$}")
}

/// A number in the index: 24 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// The 32 hex digits of the `PN` SID, two to a byte.
    sid: [u8; 16],
    account: u32,
    profile: u32,
}

fn pack_sid(sid: &PhoneNumberSid) -> [u8; 16] {
    let hex = &sid.as_str().as_bytes()[2..];
    let nibble = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        // SIDs are lower-case hex by construction (`Sid::from_str` checks it).
        _ => c - b'a' + 10,
    };
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0]) << 4 | nibble(pair[1]);
    }
    out
}

fn unpack_sid(bytes: &[u8; 16]) -> PhoneNumberSid {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 34];
    text[..2].copy_from_slice(b"PN");
    for (i, b) in bytes.iter().enumerate() {
        text[2 + 2 * i] = HEX[usize::from(b >> 4)];
        text[3 + 2 * i] = HEX[usize::from(b & 15)];
    }
    // Two letters and 32 lower-case hex digits: ASCII and a valid SID.
    std::str::from_utf8(&text)
        .ok()
        .and_then(|t| t.parse().ok())
        .expect("an unpacked SID is valid")
}

/// Where a number's calls and messages go: its own settings and the applications it names.
/// A lookup shares it ([`Route`]) rather than copy its strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Profile {
    voice: Voice,
    sms: Sms,
    voice_application: Option<ApplicationSid>,
    sms_application: Option<ApplicationSid>,
}

/// A number's (or its application's) voice webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Voice {
    pub url: Option<String>,
    pub method: String,
    pub fallback_url: Option<String>,
    pub fallback_method: String,
    pub status_callback: Option<String>,
    pub status_callback_method: String,
}

/// A number's (or its application's) messaging webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sms {
    pub url: Option<String>,
    pub method: String,
    pub fallback_url: Option<String>,
    pub fallback_method: String,
}

/// What a lookup finds: the number and the webhooks its calls and messages use (its
/// application's when it names one), shared with the index: a lookup touches the number's
/// entry, its profile and at most its applications, and copies no string.
#[derive(Debug, Clone)]
pub struct Route {
    pub sid: PhoneNumberSid,
    pub account_sid: AccountSid,
    key: u64,
    profile: Arc<Profile>,
    voice_application: Option<Arc<Application>>,
    sms_application: Option<Arc<Application>>,
    /// The SMS application whose webhooks [`Route::sms`] gives, if any.
    pub sms_application_sid: Option<ApplicationSid>,
}

impl Route {
    /// The number in E.164 form (`+15551234567`), whichever form was dialled.
    pub fn phone_number(&self) -> String {
        phone_number(self.key)
    }

    /// The voice webhooks: the voice application's, else the number's own.
    pub fn voice(&self) -> &Voice {
        self.voice_application.as_ref().map_or(&self.profile.voice, |a| &a.voice)
    }

    /// The messaging webhooks: the SMS application's, else the number's own.
    pub fn sms(&self) -> &Sms {
        self.sms_application.as_ref().map_or(&self.profile.sms, |a| &a.sms)
    }

    /// The route of a record the store returned (before the index is loaded). `None` if its
    /// number is not one a call can dial.
    fn of_record(number: PhoneNumberRecord) -> Option<Route> {
        Some(Route {
            sid: number.sid,
            account_sid: number.account_sid,
            key: key(&number.phone_number)?,
            profile: Arc::new(Profile {
                voice: Voice {
                    url: number.voice_url,
                    method: number.voice_method,
                    fallback_url: number.voice_fallback_url,
                    fallback_method: number.voice_fallback_method,
                    status_callback: number.status_callback,
                    status_callback_method: number.status_callback_method,
                },
                sms: Sms {
                    url: number.sms_url,
                    method: number.sms_method,
                    fallback_url: number.sms_fallback_url,
                    fallback_method: number.sms_fallback_method,
                },
                // The store's record carries its applications' URLs already.
                voice_application: None,
                sms_application: None,
            }),
            voice_application: None,
            sms_application: None,
            sms_application_sid: number.sms_application_sid,
        })
    }
}

impl Profile {
    /// The number's profile, its strings moved out of `route`.
    fn of(route: NumberRoute) -> Profile {
        Profile {
            voice: Voice {
                url: route.voice_url,
                method: route.voice_method,
                fallback_url: route.voice_fallback_url,
                fallback_method: route.voice_fallback_method,
                status_callback: route.status_callback,
                status_callback_method: route.status_callback_method,
            },
            sms: Sms {
                url: route.sms_url,
                method: route.sms_method,
                fallback_url: route.sms_fallback_url,
                fallback_method: route.sms_fallback_method,
            },
            voice_application: route.voice_application_sid,
            sms_application: route.sms_application_sid,
        }
    }
}

/// An application as routing sees it.
#[derive(Debug, Clone)]
struct Application {
    account: AccountSid,
    voice: Voice,
    sms: Sms,
}

impl Application {
    fn of(app: &ApplicationRecord) -> Application {
        Application {
            account: app.account_sid,
            voice: Voice {
                url: app.voice_url.clone(),
                method: app.voice_method.clone(),
                fallback_url: app.voice_fallback_url.clone(),
                fallback_method: app.voice_fallback_method.clone(),
                status_callback: app.status_callback.clone(),
                status_callback_method: app.status_callback_method.clone(),
            },
            sms: Sms {
                url: app.sms_url.clone(),
                method: app.sms_method.clone(),
                fallback_url: app.sms_fallback_url.clone(),
                fallback_method: app.sms_fallback_method.clone(),
            },
        }
    }
}

/// Profiles by id, shared and counted: a profile no number uses any more is dropped and its id
/// reused.
#[derive(Debug, Default)]
struct Profiles {
    by_id: Vec<Option<(Arc<Profile>, u32)>>,
    ids: HashMap<Arc<Profile>, u32>,
    free: Vec<u32>,
}

impl Profiles {
    fn acquire(&mut self, profile: Profile) -> u32 {
        if let Some(&id) = self.ids.get(&profile) {
            if let Some((_, users)) = &mut self.by_id[id as usize] {
                *users += 1;
            }
            return id;
        }
        let profile = Arc::new(profile);
        let id = match self.free.pop() {
            Some(id) => {
                self.by_id[id as usize] = Some((profile.clone(), 1));
                id
            }
            None => {
                self.by_id.push(Some((profile.clone(), 1)));
                // Ids stay below the number of numbers, itself far below 2^32.
                u32::try_from(self.by_id.len() - 1).expect("fewer than 2^32 profiles")
            }
        };
        self.ids.insert(profile, id);
        id
    }

    fn release(&mut self, id: u32) {
        let Some(slot) = self.by_id.get_mut(id as usize) else {
            return;
        };
        let Some((profile, users)) = slot else { return };
        *users -= 1;
        if *users == 0 {
            self.ids.remove(profile.as_ref());
            *slot = None;
            self.free.push(id);
        }
    }

    fn get(&self, id: u32) -> Option<&Arc<Profile>> {
        self.by_id.get(id as usize)?.as_ref().map(|(p, _)| p)
    }

    fn len(&self) -> usize {
        self.ids.len()
    }
}

/// Blocks of this size or more are aligned to it and may be backed by huge pages.
const HUGE_PAGE: usize = 2 << 20;

/// The number table's allocator: the system's, with its large blocks aligned to 2 MiB and
/// marked for transparent huge pages (`madvise(MADV_HUGEPAGE)`, honoured where the kernel's THP
/// mode is `madvise` or `always`). A lookup is one random probe of a table of hundreds of MB; with
/// 4 KiB pages most probes also miss the TLB and walk the page tables, with 2 MiB pages far
/// fewer do.
#[derive(Debug, Default, Clone, Copy)]
struct HugePages;

impl HugePages {
    fn layout(layout: std::alloc::Layout) -> std::alloc::Layout {
        if layout.size() < HUGE_PAGE {
            return layout;
        }
        // A power of two at least the requested alignment: valid with the same size.
        std::alloc::Layout::from_size_align(layout.size(), layout.align().max(HUGE_PAGE)).unwrap_or(layout)
    }
}

// SAFETY: every block comes from and returns to `Global` with the same (adjusted) layout, which
// `layout` derives from the caller's alone; `madvise` only advises on memory the block owns.
unsafe impl allocator_api2::alloc::Allocator for HugePages {
    fn allocate(&self, layout: std::alloc::Layout) -> Result<std::ptr::NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        let adjusted = Self::layout(layout);
        let block = allocator_api2::alloc::Global.allocate(adjusted)?;
        if adjusted.size() >= HUGE_PAGE {
            // SAFETY: the block is ours, starts on a 2 MiB boundary and spans `adjusted.size()`
            // bytes; advice never changes its contents.
            unsafe {
                libc::madvise(block.as_ptr().cast::<libc::c_void>(), adjusted.size(), libc::MADV_HUGEPAGE);
            }
        }
        Ok(block)
    }

    unsafe fn deallocate(&self, ptr: std::ptr::NonNull<u8>, layout: std::alloc::Layout) {
        // SAFETY: `ptr` was allocated by `allocate` with this layout, adjusted the same way.
        unsafe { allocator_api2::alloc::Global.deallocate(ptr, Self::layout(layout)) }
    }
}

#[derive(Debug, Default)]
struct Index {
    numbers: HashMap<u64, Entry, hashbrown::DefaultHashBuilder, HugePages>,
    accounts: Vec<AccountSid>,
    account_ids: HashMap<AccountSid, u32>,
    profiles: Profiles,
    applications: HashMap<ApplicationSid, Arc<Application>>,
}

impl Index {
    fn account_id(&mut self, account: AccountSid) -> u32 {
        if let Some(&id) = self.account_ids.get(&account) {
            return id;
        }
        let id = u32::try_from(self.accounts.len()).expect("fewer than 2^32 accounts");
        self.accounts.push(account);
        self.account_ids.insert(account, id);
        id
    }

    /// Adds or replaces a number; `false` if its number is not one a call can dial.
    fn insert(&mut self, route: NumberRoute) -> bool {
        let Some(key) = key(&route.phone_number) else {
            return false;
        };
        let sid = pack_sid(&route.sid);
        let account = self.account_id(route.account_sid);
        let entry = Entry { sid, account, profile: self.profiles.acquire(Profile::of(route)) };
        if let Some(old) = self.numbers.insert(key, entry) {
            self.profiles.release(old.profile);
        }
        true
    }

    fn remove(&mut self, phone: &str) {
        if let Some(old) = key(phone).and_then(|k| self.numbers.remove(&k)) {
            self.profiles.release(old.profile);
        }
    }

    fn route(&self, key: u64) -> Option<Route> {
        let entry = self.numbers.get(&key)?;
        let profile = self.profiles.get(entry.profile)?;
        let account = *self.accounts.get(entry.account as usize)?;
        // An application routes only the numbers of its own account, as the store's join does;
        // a deleted one is gone from here and from the numbers that named it.
        let application = |sid: &Option<ApplicationSid>| {
            sid.as_ref()
                .and_then(|s| self.applications.get(s))
                .filter(|a| a.account == account)
        };
        let voice_application = application(&profile.voice_application).cloned();
        let sms_application = application(&profile.sms_application).cloned();
        Some(Route {
            sid: unpack_sid(&entry.sid),
            account_sid: account,
            key,
            sms_application_sid: sms_application.is_some().then_some(profile.sms_application).flatten(),
            profile: Arc::clone(profile),
            voice_application,
            sms_application,
        })
    }
}

/// How big the index is, for logs and the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexSize {
    pub numbers: usize,
    pub profiles: usize,
    pub accounts: usize,
    pub applications: usize,
}

#[derive(Default, Clone)]
pub struct Routing {
    index: Arc<RwLock<Index>>,
    loaded: Arc<AtomicBool>,
}

impl Routing {
    /// Reads every number and application from the store (see the module comment): once, at
    /// start. Numbers written through the API meanwhile are in the store or reach the index
    /// through their hooks after this, so none is lost.
    pub async fn load(&self, store: &store::Store) -> Result<IndexSize, store::StoreError> {
        let mut index = Index::default();
        for app in store.all_applications().await? {
            index.applications.insert(app.sid, Arc::new(Application::of(&app)));
        }
        let mut unroutable = 0usize;
        // The next page is asked for before this one goes into the index, so the database
        // (PostgreSQL's own process, or SQLite's connection thread) reads it meanwhile.
        let fetch = |after: Option<String>| {
            let store = store.clone();
            tokio::spawn(async move { store.number_routes(after.as_deref(), LOAD_PAGE).await })
        };
        let mut next = Some(fetch(None));
        while let Some(pending) = next.take() {
            let page = pending.await.map_err(|e| std::io::Error::other(e.to_string()))??;
            if page.len() == LOAD_PAGE as usize {
                next = page.last().map(|r| fetch(Some(r.phone_number.clone())));
            }
            for route in page {
                if !index.insert(route) {
                    unroutable += 1;
                }
            }
        }
        if unroutable > 0 {
            tracing::warn!(
                unroutable,
                "numbers that are not E.164 digits cannot be dialled"
            );
        }
        let size = IndexSize {
            numbers: index.numbers.len(),
            profiles: index.profiles.len(),
            accounts: index.accounts.len(),
            applications: index.applications.len(),
        };
        // The node serves its API only after this returns, so no write hook races the load.
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = index;
        self.loaded.store(true, Ordering::Release);
        Ok(size)
    }

    /// A number was created or changed (`voice_application` is the application it uses now).
    pub fn number_saved(
        &self,
        number: &PhoneNumberRecord,
        voice_application: Option<&ApplicationSid>,
    ) {
        let route = NumberRoute::of(number, voice_application);
        if !self.write().insert(route) {
            tracing::warn!(phone_number = %number.phone_number, "a number that is not E.164 digits cannot be dialled");
        }
    }

    pub fn number_deleted(&self, phone_number: &str) {
        self.write().remove(phone_number);
    }

    pub fn application_saved(&self, app: &ApplicationRecord) {
        self.write()
            .applications
            .insert(app.sid, Arc::new(Application::of(app)));
    }

    pub fn application_deleted(&self, sid: &ApplicationSid) {
        self.write().applications.remove(sid);
    }

    pub fn size(&self) -> IndexSize {
        let index = self.read();
        IndexSize {
            numbers: index.numbers.len(),
            profiles: index.profiles.len(),
            accounts: index.accounts.len(),
            applications: index.applications.len(),
        }
    }

    /// Whether `dialled` is a number of the index: the probe a lookup starts with, without
    /// building the record (for the benchmark).
    pub fn contains(&self, dialled: &str) -> bool {
        key(dialled).is_some_and(|k| self.read().numbers.contains_key(&k))
    }

    /// The number `dialled` calls (`+15551234567` or `15551234567`), from the index alone.
    pub fn find(&self, dialled: &str) -> Option<Route> {
        let key = key(dialled)?;
        self.read().route(key)
    }

    /// The number `dialled` calls, with the URLs its applications give it. Before the index is
    /// loaded the store answers.
    pub async fn lookup(&self, store: &store::Store, dialled: &str) -> Option<Route> {
        if self.loaded.load(Ordering::Acquire) {
            return self.find(dialled);
        }
        let phone = phone_number(key(dialled)?);
        match store.number_by_phone(&phone).await {
            Ok(found) => found.and_then(Route::of_record),
            Err(e) => {
                tracing::error!(error = %e, "number lookup failed");
                None
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        // A poisoned lock only means a writer panicked; each write leaves the index whole.
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(account: AccountSid, phone: &str, url: &str) -> PhoneNumberRecord {
        let now = chrono::Utc::now();
        PhoneNumberRecord {
            sid: PhoneNumberSid::generate(),
            account_sid: account,
            phone_number: phone.to_owned(),
            friendly_name: phone.to_owned(),
            voice_url: Some(url.to_owned()),
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

    fn application(account: AccountSid, voice_url: &str) -> ApplicationRecord {
        let now = chrono::Utc::now();
        ApplicationRecord {
            sid: ApplicationSid::generate(),
            account_sid: account,
            friendly_name: "app".into(),
            voice_url: Some(voice_url.into()),
            voice_method: "GET".into(),
            voice_fallback_url: None,
            voice_fallback_method: "POST".into(),
            status_callback: None,
            status_callback_method: "POST".into(),
            voice_caller_id_lookup: false,
            sms_url: Some("http://127.0.0.1:9/app-sms".into()),
            sms_method: "POST".into(),
            sms_fallback_url: None,
            sms_fallback_method: "POST".into(),
            sms_status_callback: None,
            message_status_callback: None,
            public_application_connect_enabled: false,
            date_created: now,
            date_updated: now,
        }
    }

    #[test]
    fn keys_pack_both_forms_of_a_number_and_refuse_the_rest() {
        assert_eq!(key("+15551234567"), key("15551234567"));
        assert!(key("+15551234567").is_some());
        assert_ne!(key("0123"), key("123"));
        assert_eq!(phone_number(key("+442071838750").unwrap()), "+442071838750");
        assert_eq!(phone_number(key("0123").unwrap()), "+0123");
        assert_eq!(
            phone_number(key("999999999999999").unwrap()),
            "+999999999999999"
        );
        for bad in [
            "",
            "+",
            "alice",
            "+1555x",
            "1234567890123456",
            "++1555",
            "+-1",
        ] {
            assert_eq!(key(bad), None, "{bad}");
        }
    }

    #[test]
    fn sids_round_trip_through_16_bytes() {
        for _ in 0..100 {
            let sid = PhoneNumberSid::generate();
            assert_eq!(unpack_sid(&pack_sid(&sid)), sid);
        }
        assert_eq!(std::mem::size_of::<Entry>(), 24);
    }

    #[test]
    fn writes_change_the_index_in_place_and_profiles_are_shared() {
        let routing = Routing::default();
        let account = AccountSid::generate();
        let shared = "http://127.0.0.1:9/voice";
        let numbers: Vec<_> = (0..100)
            .map(|i| number(account, &format!("+1555000{i:04}"), shared))
            .collect();
        for n in &numbers {
            routing.number_saved(n, None);
        }
        let own = number(account, "+15559999999", "http://127.0.0.1:9/own");
        routing.number_saved(&own, None);
        assert_eq!(routing.size().numbers, 101);
        assert_eq!(
            routing.size().profiles,
            2,
            "one shared profile and one distinct"
        );

        let found = routing.find("15550000042").unwrap();
        assert_eq!(found.sid, numbers[42].sid);
        assert_eq!(found.account_sid, account);
        assert_eq!(found.phone_number(), "+15550000042");
        assert_eq!(found.voice().url.as_deref(), Some(shared));

        let mut changed = numbers[42].clone();
        changed.voice_url = Some("http://127.0.0.1:9/changed".into());
        changed.voice_method = "GET".into();
        routing.number_saved(&changed, None);
        let found = routing.find("+15550000042").unwrap();
        assert_eq!(
            (found.voice().url.as_deref(), found.voice().method.as_str()),
            (Some("http://127.0.0.1:9/changed"), "GET")
        );
        assert_eq!(routing.size().profiles, 3);

        routing.number_deleted("+15550000042");
        assert!(routing.find("+15550000042").is_none());
        assert_eq!(
            routing.size().profiles,
            2,
            "a profile nobody uses is dropped"
        );
        routing.number_deleted("+15559999999");
        assert_eq!(routing.size().profiles, 1);
        assert_eq!(routing.find("+15550000041").unwrap().sid, numbers[41].sid);
        assert!(routing.find("+15550000100").is_none());
    }

    #[test]
    fn applications_of_the_same_account_give_their_urls_until_deleted() {
        let routing = Routing::default();
        let (account, other) = (AccountSid::generate(), AccountSid::generate());
        let app = application(account, "http://127.0.0.1:9/app");
        let foreign = application(other, "http://127.0.0.1:9/evil");
        routing.application_saved(&app);
        routing.application_saved(&foreign);

        let mut n = number(account, "+15550001000", "http://127.0.0.1:9/own");
        n.sms_application_sid = Some(app.sid);
        routing.number_saved(&n, Some(&app.sid));
        let found = routing.find("+15550001000").unwrap();
        assert_eq!(found.voice().url.as_deref(), Some("http://127.0.0.1:9/app"));
        assert_eq!(found.voice().method, "GET");
        assert_eq!(found.sms().url.as_deref(), Some("http://127.0.0.1:9/app-sms"));
        assert_eq!(found.sms_application_sid, Some(app.sid));

        let mut moved = app.clone();
        moved.voice_url = Some("http://127.0.0.1:9/moved".into());
        routing.application_saved(&moved);
        assert_eq!(
            routing.find("+15550001000").unwrap().voice().url.as_deref(),
            Some("http://127.0.0.1:9/moved")
        );

        let m = number(account, "+15550001001", "http://127.0.0.1:9/own");
        routing.number_saved(&m, Some(&foreign.sid));
        assert_eq!(
            routing.find("+15550001001").unwrap().voice().url.as_deref(),
            Some("http://127.0.0.1:9/own")
        );

        routing.application_deleted(&app.sid);
        let found = routing.find("+15550001000").unwrap();
        assert_eq!(found.voice().url.as_deref(), Some("http://127.0.0.1:9/own"));
        assert_eq!(found.sms_application_sid, None);
    }

    #[tokio::test]
    async fn load_reads_every_page_and_the_store_answers_before_it() {
        let store = store::Store::open("sqlite::memory:").await.unwrap();
        let account = AccountSid::generate();
        store
            .ensure_account(&account, "token", "test")
            .await
            .unwrap();
        let app = application(account, "http://127.0.0.1:9/app");
        store.create_application(&app).await.unwrap();
        let count = LOAD_PAGE as usize * 2 + 7;
        let recs: Vec<_> = (0..count)
            .map(|i| number(account, &format!("+1555{i:07}"), "http://127.0.0.1:9/voice"))
            .collect();
        store.create_numbers(&recs, None).await.unwrap();
        assert!(store
            .set_number_voice_application(&account, &recs[5].sid, Some(&app.sid))
            .await
            .unwrap());

        let routing = Routing::default();
        let before = routing.lookup(&store, "15550000005").await.unwrap();
        assert_eq!(before.voice().url.as_deref(), Some("http://127.0.0.1:9/app"));

        let size = routing.load(&store).await.unwrap();
        assert_eq!(size.numbers, count);
        assert_eq!(size.profiles, 2);
        assert_eq!(size.applications, 1);
        for i in [0, 5, LOAD_PAGE as usize, count - 1] {
            let found = routing
                .lookup(&store, &format!("+1555{i:07}"))
                .await
                .unwrap();
            assert_eq!(found.sid, recs[i].sid);
        }
        assert_eq!(
            routing.find("+15550000005").unwrap().voice().url.as_deref(),
            Some("http://127.0.0.1:9/app")
        );
        // Loaded: the index alone answers, so a number only the store has is not found.
        store
            .create_number(&number(account, "+19990000000", "http://127.0.0.1:9/v"))
            .await
            .unwrap();
        assert!(routing.lookup(&store, "+19990000000").await.is_none());
    }
}
