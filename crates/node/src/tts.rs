//! Text to speech for `<Say>`, behind [`TtsProvider`] so cloud engines can replace the default.
//!
//! The default, [`EspeakTts`], runs `espeak-ng` as a subprocess (no shell: the text goes in on
//! stdin, so no text can become an option or a command) and decodes its WAV output to 8 kHz mono.
//! [`CachedTts`] wraps any provider so a prompt said to every caller is synthesized once.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::audio::{CacheStats, SampleCache};

/// A boxed future that can move between threads, as object-safe traits return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Twilio's limit on the text of one `<Say>`, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;

/// Why text could not be spoken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TtsError {
    #[error("espeak-ng is not installed ({program:?} not found); install the espeak-ng package")]
    NotInstalled { program: String },
    #[error("the text is {chars} characters long, more than the {MAX_TEXT_CHARS} allowed")]
    TextTooLong { chars: usize },
    #[error("speech synthesis failed: {0}")]
    Synthesis(String),
    #[error("speech synthesis took longer than {0:?}")]
    Timeout(Duration),
    #[error("could not decode the synthesized audio: {0}")]
    Decode(::media::DecodeError),
}

/// Turns text into 8 kHz mono samples.
pub trait TtsProvider: Send + Sync {
    /// `voice` and `language` are as written in the markup (`"alice"`, `"en-GB"`); a provider
    /// maps them to what it has.
    fn synthesize<'a>(
        &'a self,
        text: &'a str,
        voice: &'a str,
        language: &'a str,
    ) -> BoxFuture<'a, Result<Arc<[i16]>, TtsError>>;
}

/// How to run espeak-ng.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspeakConfig {
    /// The executable, looked up on `PATH` if it has no directory.
    pub program: PathBuf,
    pub words_per_minute: u32,
    /// Time allowed for one synthesis before the process is killed.
    pub timeout: Duration,
}

impl Default for EspeakConfig {
    fn default() -> Self {
        EspeakConfig {
            program: PathBuf::from("espeak-ng"),
            words_per_minute: 160,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Speech from the espeak-ng program.
#[derive(Debug, Clone, Default)]
pub struct EspeakTts {
    config: EspeakConfig,
}

impl EspeakTts {
    pub fn new(config: EspeakConfig) -> Self {
        EspeakTts { config }
    }

    async fn run(&self, text: &str, voice: &str, language: &str) -> Result<Arc<[i16]>, TtsError> {
        let chars = text.chars().count();
        if chars > MAX_TEXT_CHARS {
            return Err(TtsError::TextTooLong { chars });
        }
        if text.trim().is_empty() {
            return Ok(Arc::from(Vec::new()));
        }
        let program = self.config.program.display().to_string();
        let mut child = Command::new(&self.config.program)
            .arg("--stdout")
            .arg("--stdin")
            .arg("-v")
            .arg(espeak_voice(voice, language))
            .arg("-s")
            .arg(self.config.words_per_minute.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A timed-out or abandoned synthesis must not leave a process behind.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => TtsError::NotInstalled {
                    program: program.clone(),
                },
                _ => TtsError::Synthesis(format!("could not start {program}: {e}")),
            })?;

        let mut stdin = child.stdin.take().expect("stdin was set to piped");
        let input = text.as_bytes().to_vec();
        // Written while stdout is read: a long text could otherwise fill both pipes and stall.
        let write = async move {
            // A failed write shows up as the process's own error status below.
            let _ = stdin.write_all(&input).await;
            drop(stdin);
        };
        let run = async { tokio::join!(write, child.wait_with_output()).1 };
        let output = tokio::time::timeout(self.config.timeout, run)
            .await
            .map_err(|_| TtsError::Timeout(self.config.timeout))?
            .map_err(|e| TtsError::Synthesis(format!("{program}: {e}")))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(TtsError::Synthesis(format!(
                "{program} exited with {}: {}",
                output.status,
                stderr.trim()
            )));
        }
        let wav = output.stdout;
        // Resampling 22.05 kHz to 8 kHz is CPU work; keep it off the async workers.
        let samples =
            tokio::task::spawn_blocking(move || ::media::decode_audio(&wav, Some("audio/wav")))
                .await
                .map_err(|e| TtsError::Synthesis(format!("decoder task failed: {e}")))?
                .map_err(TtsError::Decode)?;
        Ok(Arc::from(samples))
    }
}

impl TtsProvider for EspeakTts {
    fn synthesize<'a>(
        &'a self,
        text: &'a str,
        voice: &'a str,
        language: &'a str,
    ) -> BoxFuture<'a, Result<Arc<[i16]>, TtsError>> {
        Box::pin(self.run(text, voice, language))
    }
}

/// The espeak-ng voice for a Twilio `voice` and `language`: the language's voice, with the
/// female variant `+f3` for Twilio's female voices.
pub fn espeak_voice(voice: &str, language: &str) -> String {
    let base = espeak_language(language);
    if is_female(voice) {
        format!("{base}+f3")
    } else {
        base
    }
}

/// Maps a BCP 47 tag as Twilio writes it (`en-US`) to an espeak-ng voice name.
fn espeak_language(language: &str) -> String {
    let tag = language.trim().to_ascii_lowercase().replace('_', "-");
    let mapped = match tag.as_str() {
        "" | "en" | "en-us" | "en-ca" => "en-us",
        "en-gb" | "en-au" | "en-nz" | "en-ie" | "en-in" | "en-za" => "en-gb",
        "es-mx" | "es-us" | "es-419" => "es-419",
        "fr-be" => "fr-be",
        "fr-ch" => "fr-ch",
        "pt-br" => "pt-br",
        "zh" | "zh-cn" | "zh-tw" | "cmn" | "cmn-cn" => "cmn",
        "zh-hk" | "yue" | "yue-hk" => "yue",
        "no" | "nb" | "nb-no" | "no-no" => "nb",
        _ => {
            // espeak-ng names most languages by the primary subtag (de-DE -> de, fr-FR -> fr).
            // Only letters pass, so no markup value can reach the command line as anything else.
            let primary = tag.split('-').next().unwrap_or("");
            if !primary.is_empty()
                && primary.len() <= 3
                && primary.chars().all(|c| c.is_ascii_lowercase())
            {
                return primary.to_owned();
            }
            "en-us"
        }
    };
    mapped.to_owned()
}

/// Amazon Polly voices that are male; every other Polly and Google voice is spoken as female,
/// since espeak-ng has no per-voice match and most named voices are female.
const MALE_POLLY_VOICES: &[&str] = &[
    "matthew",
    "joey",
    "justin",
    "kevin",
    "stephen",
    "brian",
    "arthur",
    "russell",
    "geraint",
    "aditi-male",
    "mathieu",
    "remi",
    "liam",
    "hans",
    "daniel",
    "enrique",
    "miguel",
    "pedro",
    "andres",
    "giorgio",
    "adriano",
    "takumi",
    "cristiano",
    "ricardo",
    "thiago",
    "jacek",
    "jan",
    "maxim",
    "mads",
    "ruben",
    "karl",
    "gregory",
    "seoyeon-male",
    "zhiyu-male",
];

fn is_female(voice: &str) -> bool {
    let voice = voice.trim().to_ascii_lowercase();
    if voice == "woman" || voice == "alice" {
        return true;
    }
    if let Some(name) = voice.strip_prefix("polly.") {
        // "Polly.Matthew-Neural" and "Polly.Matthew" are the same speaker.
        let speaker = name.split('-').next().unwrap_or(name);
        return !MALE_POLLY_VOICES.contains(&speaker);
    }
    voice.starts_with("google.")
}

type TtsKey = (String, String, String);

/// Keeps what a provider synthesized, keyed by (text, voice, language), bounded by bytes, with
/// one synthesis in flight per key.
pub struct CachedTts<P> {
    inner: P,
    cache: SampleCache<TtsKey, TtsError>,
}

impl<P: TtsProvider> CachedTts<P> {
    /// `max_bytes` bounds the samples kept (16 000 bytes a second of speech).
    pub fn new(inner: P, max_bytes: usize) -> Self {
        CachedTts {
            inner,
            cache: SampleCache::new(max_bytes),
        }
    }

    pub fn inner(&self) -> &P {
        &self.inner
    }

    pub fn stats(&self) -> CacheStats {
        self.cache.stats()
    }
}

impl<P: TtsProvider> TtsProvider for CachedTts<P> {
    fn synthesize<'a>(
        &'a self,
        text: &'a str,
        voice: &'a str,
        language: &'a str,
    ) -> BoxFuture<'a, Result<Arc<[i16]>, TtsError>> {
        let key = (text.to_owned(), voice.to_owned(), language.to_owned());
        Box::pin(
            self.cache
                .get_or_load(key, move || self.inner.synthesize(text, voice, language)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMPT: &str = "Hello, please enter your digits";

    fn espeak() -> CachedTts<EspeakTts> {
        CachedTts::new(EspeakTts::default(), 8 << 20)
    }

    #[test]
    fn twilio_languages_map_to_espeak_voices() {
        assert_eq!(espeak_voice("man", "en-US"), "en-us");
        assert_eq!(espeak_voice("man", "en-GB"), "en-gb");
        assert_eq!(espeak_voice("man", "fr-FR"), "fr");
        assert_eq!(espeak_voice("man", "de-DE"), "de");
        assert_eq!(espeak_voice("man", "es-ES"), "es");
        assert_eq!(espeak_voice("man", "es-MX"), "es-419");
        assert_eq!(espeak_voice("man", "pt-BR"), "pt-br");
        assert_eq!(espeak_voice("man", "zh-CN"), "cmn");
        assert_eq!(espeak_voice("man", "nb-NO"), "nb");
        assert_eq!(espeak_voice("man", ""), "en-us");
        assert_eq!(espeak_voice("", "en"), "en-us");
        // Nothing but letters reaches the argument list.
        assert_eq!(espeak_voice("man", "--help"), "en-us");
        assert_eq!(espeak_voice("man", "de;rm -rf"), "en-us");
    }

    #[test]
    fn female_voices_get_the_female_variant() {
        assert_eq!(espeak_voice("woman", "en-US"), "en-us+f3");
        assert_eq!(espeak_voice("alice", "en-GB"), "en-gb+f3");
        assert_eq!(espeak_voice("Polly.Joanna", "en-US"), "en-us+f3");
        assert_eq!(espeak_voice("Polly.Celine-Neural", "fr-FR"), "fr+f3");
        assert_eq!(espeak_voice("Google.en-US-Standard-C", "en-US"), "en-us+f3");
        assert_eq!(espeak_voice("Polly.Matthew", "en-US"), "en-us");
        assert_eq!(espeak_voice("Polly.Matthew-Neural", "en-US"), "en-us");
        assert_eq!(espeak_voice("man", "de-DE"), "de");
        assert_eq!(espeak_voice("unknown", "en-US"), "en-us");
    }

    #[tokio::test]
    async fn prompt_is_spoken_at_a_usable_level_and_cached() {
        let tts = espeak();
        let first = tts
            .synthesize(PROMPT, "man", "en-US")
            .await
            .expect("espeak-ng speaks");
        let seconds = first.len() as f32 / 8000.0;
        assert!((1.5..=4.0).contains(&seconds), "{seconds} s");
        let level = ::media::level::rms_dbfs(&first);
        assert!(level > -35.0, "{level} dBFS");

        let second = tts.synthesize(PROMPT, "man", "en-US").await.unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        let stats = tts.stats();
        assert_eq!((stats.loads, stats.hits), (1, 1));

        // Another voice is another entry.
        let female = tts.synthesize(PROMPT, "alice", "en-US").await.unwrap();
        assert_ne!(&*female, &*first);
        assert_eq!(tts.stats().loads, 2);
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_synthesis() {
        let tts = espeak();
        let (a, b) = tokio::join!(
            tts.synthesize("Thank you for calling", "woman", "en-GB"),
            tts.synthesize("Thank you for calling", "woman", "en-GB"),
        );
        assert!(Arc::ptr_eq(&a.unwrap(), &b.unwrap()));
        assert_eq!(tts.stats().loads, 1);
    }

    #[tokio::test]
    async fn missing_program_is_not_installed() {
        let tts = EspeakTts::new(EspeakConfig {
            program: PathBuf::from("/nonexistent/espeak-ng"),
            ..Default::default()
        });
        let error = tts.synthesize(PROMPT, "man", "en-US").await.unwrap_err();
        assert_eq!(
            error,
            TtsError::NotInstalled {
                program: "/nonexistent/espeak-ng".into()
            }
        );
        assert!(error.to_string().contains("install the espeak-ng package"));
    }

    #[tokio::test]
    async fn unknown_language_fails_and_is_not_cached() {
        let tts = espeak();
        let error = tts.synthesize(PROMPT, "man", "xq-ZZ").await.unwrap_err();
        assert!(matches!(error, TtsError::Synthesis(_)), "{error:?}");
        assert!(
            error.to_string().contains("voice does not exist"),
            "{error}"
        );
        assert_eq!(tts.stats().entries, 0);
    }

    #[tokio::test]
    async fn text_that_looks_like_options_is_spoken_as_text() {
        let samples = EspeakTts::default()
            .synthesize("--version -v xx", "man", "en-US")
            .await
            .expect("spoken, not parsed as options");
        assert!(samples.len() > 4000);
    }

    #[tokio::test]
    async fn empty_and_oversized_text() {
        let tts = EspeakTts::default();
        assert!(tts
            .synthesize("  ", "man", "en-US")
            .await
            .unwrap()
            .is_empty());
        let long = "a".repeat(MAX_TEXT_CHARS + 1);
        let error = tts.synthesize(&long, "man", "en-US").await.unwrap_err();
        assert_eq!(
            error,
            TtsError::TextTooLong {
                chars: MAX_TEXT_CHARS + 1
            }
        );
    }
}
