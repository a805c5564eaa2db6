//! Audio files for `<Play>`: fetched over HTTP(S) once, decoded to 8 kHz mono, kept in memory.
//!
//! A menu prompt is played to every caller, so the decoded samples are cached by URL, bounded
//! by total bytes with least-recently-used eviction, and concurrent loads of one URL share a
//! single fetch and decode. The same cache structure backs the TTS cache ([`SampleCache`]).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use tokio::sync::OnceCell;

/// Largest audio file fetched, in bytes (before decoding).
pub const MAX_FILE_BYTES: usize = 32 * 1024 * 1024;

/// Time allowed for one fetch, from connecting until the last byte.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an audio file could not be played.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    #[error("invalid audio URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("could not connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("fetching {url} took longer than {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url} answered with HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("the audio file at {url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("fetching {url} failed: {reason}")]
    Request { url: String, reason: String },
    #[error("could not decode the audio file at {url}: {source}")]
    Decode {
        url: String,
        source: ::media::DecodeError,
    },
    #[error("could not build the HTTP client: {0}")]
    Client(String),
}

/// Counters of a [`SampleCache`], for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Requests answered from memory.
    pub hits: u64,
    /// Loads actually run (fetch+decode or synthesis), successful or not.
    pub loads: u64,
    /// Entries held now.
    pub entries: usize,
    /// Bytes of samples held now.
    pub bytes: usize,
}

type Flight<E> = Arc<OnceCell<Result<Arc<[i16]>, E>>>;

struct Ready {
    samples: Arc<[i16]>,
    last_used: u64,
}

struct CacheState<K, E> {
    ready: HashMap<K, Ready>,
    in_flight: HashMap<K, Flight<E>>,
    bytes: usize,
    /// Logical clock for recency; a counter avoids reading the time.
    clock: u64,
    hits: u64,
    loads: u64,
}

/// Decoded samples by key, bounded by total bytes (least recently used evicted first), with one
/// load in flight per key however many callers wait for it. Errors are shared by the callers
/// already waiting but not kept, so the next request tries again.
pub struct SampleCache<K, E> {
    max_bytes: usize,
    state: Mutex<CacheState<K, E>>,
}

impl<K: Hash + Eq + Clone, E: Clone> SampleCache<K, E> {
    pub fn new(max_bytes: usize) -> Self {
        SampleCache {
            max_bytes,
            state: Mutex::new(CacheState {
                ready: HashMap::new(),
                in_flight: HashMap::new(),
                bytes: 0,
                clock: 0,
                hits: 0,
                loads: 0,
            }),
        }
    }

    /// Returns the samples for `key`, running `load` only if no one holds or is loading them.
    /// If the caller running `load` is cancelled, a waiting caller runs its own `load` instead.
    pub async fn get_or_load<F, Fut>(&self, key: K, load: F) -> Result<Arc<[i16]>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<[i16]>, E>>,
    {
        let flight = {
            let mut state = self.lock();
            state.clock += 1;
            let now = state.clock;
            if let Some(ready) = state.ready.get_mut(&key) {
                ready.last_used = now;
                let samples = ready.samples.clone();
                state.hits += 1;
                return Ok(samples);
            }
            state.in_flight.entry(key.clone()).or_default().clone()
        };

        let mut ran = false;
        let result = flight
            .get_or_init(|| {
                ran = true;
                load()
            })
            .await
            .clone();

        // Only the caller whose load filled the cell files the result, so it is filed once.
        if ran {
            let mut state = self.lock();
            state.loads += 1;
            if state
                .in_flight
                .get(&key)
                .is_some_and(|f| Arc::ptr_eq(f, &flight))
            {
                state.in_flight.remove(&key);
            }
            if let Ok(samples) = &result {
                state.insert(key, samples.clone(), self.max_bytes);
            }
        }
        result
    }

    pub fn stats(&self) -> CacheStats {
        let state = self.lock();
        CacheStats {
            hits: state.hits,
            loads: state.loads,
            entries: state.ready.len(),
            bytes: state.bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, CacheState<K, E>> {
        // No code panics while holding the lock with the state half-updated, so a poisoned
        // lock still guards consistent data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K: Hash + Eq + Clone, E> CacheState<K, E> {
    fn insert(&mut self, key: K, samples: Arc<[i16]>, max_bytes: usize) {
        let size = std::mem::size_of_val(&*samples);
        if size > max_bytes {
            // Larger than the whole cache: serve it, keep nothing.
            return;
        }
        self.clock += 1;
        let entry = Ready {
            samples,
            last_used: self.clock,
        };
        if let Some(old) = self.ready.insert(key.clone(), entry) {
            self.bytes -= std::mem::size_of_val(&*old.samples);
        }
        self.bytes += size;
        while self.bytes > max_bytes {
            // A linear scan: caches hold prompts, hundreds of entries, not millions.
            let oldest = self
                .ready
                .iter()
                .filter(|(k, _)| **k != key)
                .min_by_key(|(_, r)| r.last_used)
                .map(|(k, _)| k.clone());
            let Some(oldest) = oldest else { break };
            if let Some(evicted) = self.ready.remove(&oldest) {
                self.bytes -= std::mem::size_of_val(&*evicted.samples);
            }
        }
    }
}

/// Fetches, decodes and caches audio files by URL.
pub struct AudioCache {
    http: reqwest::Client,
    cache: SampleCache<String, AudioError>,
    fetch_timeout: Duration,
    max_file_bytes: usize,
}

impl AudioCache {
    /// `max_bytes` bounds the decoded samples kept (2 bytes per sample, 16 000 bytes a second).
    pub fn new(client: reqwest::Client, max_bytes: usize) -> Self {
        AudioCache {
            http: client,
            cache: SampleCache::new(max_bytes),
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            max_file_bytes: MAX_FILE_BYTES,
        }
    }

    /// A client suited to fetching audio: connect timeout, Twilio's user agent, rustls.
    pub fn default_client() -> Result<reqwest::Client, AudioError> {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent("TwilioProxy/1.1")
            .build()
            .map_err(|e| AudioError::Client(error_chain(&e)))
    }

    pub fn with_fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    pub fn with_max_file_bytes(mut self, limit: usize) -> Self {
        self.max_file_bytes = limit;
        self
    }

    /// The decoded 8 kHz mono samples of the file at `url`.
    pub async fn load(&self, url: &str) -> Result<Arc<[i16]>, AudioError> {
        self.cache
            .get_or_load(url.to_owned(), || self.fetch_and_decode(url))
            .await
    }

    pub fn stats(&self) -> CacheStats {
        self.cache.stats()
    }

    async fn fetch_and_decode(&self, url: &str) -> Result<Arc<[i16]>, AudioError> {
        let (bytes, hint) = self.fetch(url).await?;
        let owned_url = url.to_owned();
        // Decoding minutes of MP3 is CPU work; keep it off the async workers.
        let decoded =
            tokio::task::spawn_blocking(move || ::media::decode_audio(&bytes, hint.as_deref()))
                .await
                .map_err(|e| AudioError::Request {
                    url: owned_url.clone(),
                    reason: format!("decoder task failed: {e}"),
                })?;
        let samples = decoded.map_err(|source| AudioError::Decode {
            url: owned_url,
            source,
        })?;
        Ok(Arc::from(samples))
    }

    /// The body and a format hint (Content-Type, else the URL path).
    async fn fetch(&self, url: &str) -> Result<(Vec<u8>, Option<String>), AudioError> {
        let invalid = |reason: String| AudioError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        if parsed.scheme() != "http" && parsed.scheme() != "https" {
            return Err(invalid(format!(
                "scheme {:?} is not http or https",
                parsed.scheme()
            )));
        }
        let path_hint = parsed.path().to_owned();
        let classify = |e: reqwest::Error| {
            let url = url.to_owned();
            if e.is_timeout() {
                AudioError::Timeout {
                    url,
                    timeout: self.fetch_timeout,
                }
            } else if e.is_connect() {
                AudioError::Connect {
                    url,
                    reason: error_chain(&e),
                }
            } else {
                AudioError::Request {
                    url,
                    reason: error_chain(&e),
                }
            }
        };
        let mut response = self
            .http
            .get(parsed)
            .timeout(self.fetch_timeout)
            .send()
            .await
            .map_err(classify)?;
        let status = response.status();
        if !status.is_success() {
            return Err(AudioError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
            });
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.starts_with("application/octet-stream"))
            .map(str::to_owned);

        let limit = self.max_file_bytes;
        let too_large = || AudioError::TooLarge {
            url: url.to_owned(),
            limit,
        };
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::with_capacity(
            response.content_length().map_or(0, |len| len as usize), // bounded by limit above
        );
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, content_type.or(Some(path_hint))))
    }
}

/// reqwest's Display hides the cause ("error sending request"); the chain names it.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::get;
    use axum::Router;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    /// A WAV file: `seconds` of a 440 Hz tone, 16 kHz 16-bit mono, made with hound.
    fn tone_wav(seconds: f32) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut cursor = std::io::Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
        let frames = (16_000.0 * seconds) as usize;
        for n in 0..frames {
            let t = n as f32 / 16_000.0;
            let v = (t * 440.0 * std::f32::consts::TAU).sin() * 8000.0;
            writer.write_sample(v as i16).unwrap();
        }
        writer.finalize().unwrap();
        cursor.into_inner()
    }

    #[derive(Clone)]
    struct Files {
        hits: Arc<AtomicUsize>,
        wav: Arc<Vec<u8>>,
    }

    async fn file(State(files): State<Files>, Path(name): Path<String>) -> impl IntoResponse {
        files.hits.fetch_add(1, Ordering::SeqCst);
        match name.as_str() {
            "tone.wav" | "other.wav" => {
                // Slow enough that concurrent loads overlap.
                tokio::time::sleep(Duration::from_millis(100)).await;
                ([(CONTENT_TYPE, "audio/wav")], files.wav.to_vec()).into_response()
            }
            "text.wav" => ([(CONTENT_TYPE, "audio/wav")], "not audio").into_response(),
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    }

    struct Server {
        addr: SocketAddr,
        hits: Arc<AtomicUsize>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Server {
        fn url(&self, name: &str) -> String {
            format!("http://{}/{name}", self.addr)
        }
    }

    async fn serve() -> Server {
        let hits = Arc::new(AtomicUsize::new(0));
        let files = Files {
            hits: hits.clone(),
            wav: Arc::new(tone_wav(1.0)),
        };
        let router = Router::new().route("/{name}", get(file)).with_state(files);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("test server runs");
        });
        Server { addr, hits, task }
    }

    fn cache(max_bytes: usize) -> AudioCache {
        AudioCache::new(AudioCache::default_client().unwrap(), max_bytes)
    }

    #[tokio::test]
    async fn second_load_is_served_from_memory() {
        let server = serve().await;
        let audio = cache(1 << 20);
        let first = audio.load(&server.url("tone.wav")).await.expect("loads");
        // One second at 8 kHz, give or take the resampler's edges.
        assert!(
            (7900..=8100).contains(&first.len()),
            "{} samples",
            first.len()
        );
        assert!(::media::level::rms_dbfs(&first) > -20.0);
        let second = audio.load(&server.url("tone.wav")).await.expect("loads");
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(server.hits.load(Ordering::SeqCst), 1);
        let stats = audio.stats();
        assert_eq!((stats.hits, stats.loads, stats.entries), (1, 1, 1));
        assert_eq!(stats.bytes, first.len() * 2);
    }

    #[tokio::test]
    async fn concurrent_loads_share_one_fetch() {
        let server = serve().await;
        let audio = cache(1 << 20);
        let url = server.url("tone.wav");
        let (a, b, c) = tokio::join!(audio.load(&url), audio.load(&url), audio.load(&url));
        let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
        assert!(Arc::ptr_eq(&a, &b) && Arc::ptr_eq(&b, &c));
        assert_eq!(server.hits.load(Ordering::SeqCst), 1);
        assert_eq!(audio.stats().loads, 1);
    }

    #[tokio::test]
    async fn not_found_is_an_error_and_not_cached() {
        let server = serve().await;
        let audio = cache(1 << 20);
        let url = server.url("missing.wav");
        let error = audio.load(&url).await.unwrap_err();
        assert_eq!(
            error,
            AudioError::Status {
                url: url.clone(),
                status: 404
            }
        );
        assert_eq!(
            error.to_string(),
            format!("{url} answered with HTTP status 404")
        );
        // Failures are retried on the next request.
        audio.load(&url).await.unwrap_err();
        assert_eq!(server.hits.load(Ordering::SeqCst), 2);
        assert_eq!(audio.stats().entries, 0);
    }

    #[tokio::test]
    async fn undecodable_body_is_a_decode_error() {
        let server = serve().await;
        let error = cache(1 << 20)
            .load(&server.url("text.wav"))
            .await
            .unwrap_err();
        assert!(matches!(error, AudioError::Decode { .. }), "{error:?}");
        assert!(error
            .to_string()
            .starts_with("could not decode the audio file at"));
    }

    #[tokio::test]
    async fn oversized_file_is_refused() {
        let server = serve().await;
        let audio = cache(1 << 20).with_max_file_bytes(1000);
        let error = audio.load(&server.url("tone.wav")).await.unwrap_err();
        assert!(
            matches!(error, AudioError::TooLarge { limit: 1000, .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn least_recently_used_is_evicted_when_full() {
        let server = serve().await;
        // Room for one decoded second (about 16 000 bytes), not two.
        let audio = cache(20_000);
        audio.load(&server.url("tone.wav")).await.unwrap();
        audio.load(&server.url("other.wav")).await.unwrap();
        assert_eq!(audio.stats().entries, 1);
        // "other" is kept, "tone" was evicted and is fetched again.
        audio.load(&server.url("other.wav")).await.unwrap();
        assert_eq!(server.hits.load(Ordering::SeqCst), 2);
        audio.load(&server.url("tone.wav")).await.unwrap();
        assert_eq!(server.hits.load(Ordering::SeqCst), 3);
        assert!(audio.stats().bytes <= 20_000);
    }

    #[tokio::test]
    async fn bad_urls_and_dead_servers_are_errors() {
        let audio = cache(1 << 20);
        let error = audio.load("file:///etc/passwd").await.unwrap_err();
        assert!(matches!(error, AudioError::InvalidUrl { .. }), "{error:?}");
        let addr = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let error = audio
            .load(&format!("http://{addr}/x.wav"))
            .await
            .unwrap_err();
        assert!(matches!(error, AudioError::Connect { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn cancelled_loader_hands_over_to_a_waiter() {
        let cache: SampleCache<&str, String> = SampleCache::new(1 << 20);
        // The first caller starts a load that never finishes, then is dropped.
        let stuck = cache.get_or_load("k", std::future::pending);
        let result = tokio::time::timeout(Duration::from_millis(20), stuck).await;
        assert!(result.is_err());
        let samples = cache
            .get_or_load("k", || async {
                Ok::<_, String>(Arc::from(vec![1i16, 2, 3]))
            })
            .await
            .unwrap();
        assert_eq!(&*samples, &[1, 2, 3]);
        assert_eq!(cache.stats().entries, 1);
    }
}
