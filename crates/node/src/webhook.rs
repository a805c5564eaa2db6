//! The HTTP client for customers' webhooks: voice URLs, fallback URLs and status callbacks.
//!
//! Requests are shaped and signed exactly as Twilio does it, so an app that already checks
//! `X-Twilio-Signature` with an official SDK's `RequestValidator` accepts ours unchanged: POST
//! sends the parameters form-encoded and signs the URL followed by every parameter sorted by
//! name; GET appends the parameters to the URL's query and signs that full URL alone.
//!
//! The engine decides what to fetch and what a failure means (Twilio error 11200); this module only
//! turns a [`WebhookRequest`] into one HTTP exchange with bounded time and size.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use engine::HttpMethod;
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use sha1::Sha1;

/// The header carrying the request signature, as Twilio names it.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// Limits and identity of the webhook client. [`Default`] gives Twilio's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Time allowed for DNS, TCP and TLS.
    pub connect_timeout: Duration,
    /// Time allowed for the whole exchange, from connecting until the last byte of the body.
    pub total_timeout: Duration,
    pub user_agent: String,
    /// Largest accepted response body, in bytes.
    pub max_body: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            connect_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(15),
            // Twilio's own value: some apps check it to recognise webhook traffic.
            user_agent: "TwilioProxy/1.1".to_owned(),
            max_body: 1024 * 1024,
        }
    }
}

/// One webhook request: where, how, which parameters, and the token that signs it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    pub url: String,
    pub method: HttpMethod,
    /// Twilio's request parameters (`CallSid`, `From`, `Digits`, ...), in the order to send them.
    pub params: Vec<(String, String)>,
    /// The account's auth token, the HMAC key of `X-Twilio-Signature`.
    pub auth_token: String,
}

// Hand-written so the auth token never reaches a log line.
impl fmt::Debug for WebhookRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookRequest")
            .field("url", &self.url)
            .field("method", &self.method)
            .field("params", &self.params)
            .field("auth_token", &"<redacted>")
            .finish()
    }
}

/// A 2xx answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReply {
    pub status: u16,
    /// The body, decoded as UTF-8 (invalid sequences replaced, so the markup parser reports them).
    pub body: String,
    pub content_type: Option<String>,
}

impl From<WebhookReply> for engine::WebhookReply {
    fn from(reply: WebhookReply) -> Self {
        engine::WebhookReply {
            body: reply.body,
            content_type: reply.content_type,
        }
    }
}

/// Why a webhook exchange gave no usable answer. Each is Twilio error 11200 for the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    #[error("invalid webhook URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("could not connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("no complete answer from {url} within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url} answered with HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("the answer from {url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("request to {url} failed: {reason}")]
    Request { url: String, reason: String },
    #[error("could not build the HTTP client: {0}")]
    Client(String),
}

impl From<WebhookError> for engine::WebhookFailure {
    fn from(error: WebhookError) -> Self {
        match error {
            WebhookError::Connect { .. } => engine::WebhookFailure::Connect(error.to_string()),
            WebhookError::Timeout { .. } => engine::WebhookFailure::Timeout,
            WebhookError::Status { status, .. } => engine::WebhookFailure::Status(status),
            other => engine::WebhookFailure::Other(other.to_string()),
        }
    }
}

/// Computes `X-Twilio-Signature`: base64 of HMAC-SHA1, keyed with the auth token, over the URL
/// followed by each parameter's name and value, sorted by name then value.
///
/// Identical name/value pairs count once, as in Twilio's validators, which read the parameters
/// into a multi-map of sets. For GET, pass the full URL (query included) and no parameters.
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    sorted.sort_unstable();
    sorted.dedup();

    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac =
        Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A request as it goes on the wire: final URL, optional form body, signature.
#[derive(Debug)]
struct Prepared {
    url: url::Url,
    form: Option<String>,
    signature: String,
}

fn prepare(request: &WebhookRequest) -> Result<Prepared, WebhookError> {
    let invalid = |reason: String| WebhookError::InvalidUrl {
        url: request.url.clone(),
        reason,
    };
    let mut url = url::Url::parse(&request.url).map_err(|e| invalid(e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid(format!(
            "scheme {:?} is not http or https",
            url.scheme()
        )));
    }
    if url.host().is_none() {
        return Err(invalid("no host".to_owned()));
    }
    // The signature covers the URL as sent (normalised by the parser), which is the URL the
    // app's framework reconstructs from the request line and Host header.
    match request.method {
        HttpMethod::Get => {
            if !request.params.is_empty() {
                // Appends after any query the app configured; an empty list would leave a stray '?'.
                url.query_pairs_mut().extend_pairs(&request.params);
            }
            let signature = twilio_signature(&request.auth_token, url.as_str(), &[]);
            Ok(Prepared {
                url,
                form: None,
                signature,
            })
        }
        HttpMethod::Post => {
            let form = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&request.params)
                .finish();
            let signature = twilio_signature(&request.auth_token, url.as_str(), &request.params);
            Ok(Prepared {
                url,
                form: Some(form),
                signature,
            })
        }
    }
}

/// Sends webhook requests. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    config: WebhookConfig,
}

impl WebhookClient {
    pub fn new(config: WebhookConfig) -> Result<Self, WebhookError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.total_timeout)
            .user_agent(config.user_agent.clone())
            .build()
            .map_err(|e| WebhookError::Client(error_chain(&e)))?;
        Ok(WebhookClient { http, config })
    }

    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }

    /// Performs one exchange. Only a 2xx answer whose body fits `max_body` is a success.
    pub async fn fetch(&self, request: WebhookRequest) -> Result<WebhookReply, WebhookError> {
        self.exchange(request, false).await
    }

    /// Performs one exchange and returns whatever status came back with its body (a Proxy
    /// intercept callback's 403 carries the TwiML to play); only transport failures and a body
    /// over `max_body` are errors.
    pub async fn fetch_any_status(&self, request: WebhookRequest) -> Result<WebhookReply, WebhookError> {
        self.exchange(request, true).await
    }

    async fn exchange(&self, request: WebhookRequest, any_status: bool) -> Result<WebhookReply, WebhookError> {
        let prepared = prepare(&request)?;
        let url = prepared.url.to_string();
        let signature = HeaderValue::from_str(&prepared.signature)
            .expect("base64 is always a valid header value");
        let builder = match prepared.form {
            None => self.http.get(prepared.url),
            Some(form) => self
                .http
                .post(prepared.url)
                .header(CONTENT_TYPE, HeaderValue::from_static(FORM_CONTENT_TYPE))
                .body(form),
        };
        let mut response = builder
            .header(SIGNATURE_HEADER, signature)
            .send()
            .await
            .map_err(|e| self.classify(&url, &e))?;

        let status = response.status();
        if !status.is_success() && !any_status {
            return Err(WebhookError::Status {
                url,
                status: status.as_u16(),
            });
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);

        let limit = self.config.max_body;
        let too_large = || WebhookError::TooLarge {
            url: url.clone(),
            limit,
        };
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(too_large());
        }
        // Read chunk by chunk: a chunked answer announces no length, and must not fill memory.
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.classify(&url, &e))?
        {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(WebhookReply {
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body).into_owned(),
            content_type,
        })
    }

    /// Sends a status callback in the background; a failure is logged and otherwise ignored,
    /// as Twilio does. Must be called from within a tokio runtime. The handle may be dropped.
    pub fn post_status_callback(&self, request: WebhookRequest) -> tokio::task::JoinHandle<()> {
        let client = self.clone();
        tokio::spawn(async move {
            let url = request.url.clone();
            match client.fetch(request).await {
                Ok(reply) => tracing::debug!(%url, status = reply.status, "status callback sent"),
                Err(error) => tracing::warn!(%url, %error, "status callback failed"),
            }
        })
    }

    fn classify(&self, url: &str, error: &reqwest::Error) -> WebhookError {
        let url = url.to_owned();
        // A connect timeout is both; the caller cares that time ran out.
        if error.is_timeout() {
            let timeout = if error.is_connect() {
                self.config.connect_timeout
            } else {
                self.config.total_timeout
            };
            WebhookError::Timeout { url, timeout }
        } else if error.is_connect() {
            WebhookError::Connect {
                url,
                reason: error_chain(error),
            }
        } else {
            WebhookError::Request {
                url,
                reason: error_chain(error),
            }
        }
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
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::routing::any;
    use axum::Router;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A server task that is stopped when the test ends, pass or fail.
    struct Server {
        addr: SocketAddr,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn serve(router: Router) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("bound socket has an address");
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("test server runs");
        });
        Server { addr, task }
    }

    #[derive(Debug, Clone)]
    struct Seen {
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    }

    /// Records every request and answers with TwiML.
    async fn recording_server() -> (Server, Arc<Mutex<Vec<Seen>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let router = Router::new().fallback(any(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let log = log.clone();
                async move {
                    log.lock().unwrap().push(Seen {
                        method,
                        uri,
                        headers,
                        body,
                    });
                    (
                        [(CONTENT_TYPE, "text/xml; charset=utf-8")],
                        "<Response><Say>Hi</Say></Response>",
                    )
                }
            },
        ));
        (serve(router).await, seen)
    }

    fn client() -> WebhookClient {
        WebhookClient::new(WebhookConfig::default()).expect("client builds")
    }

    // Expected values computed with the official twilio-python SDK:
    // RequestValidator(token).compute_signature(url, params).
    #[test]
    fn signature_matches_twilio_sdk_vectors() {
        let params = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(
            twilio_signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        // Repeated names, a duplicate pair, non-ASCII values, and an unsorted input order.
        let params = pairs(&[
            ("To", "+15551230000"),
            ("Digits", "9"),
            ("Digits", "1"),
            ("Body", "héllo wörld & más"),
            ("Digits", "9"),
        ]);
        assert_eq!(
            twilio_signature("12345", "http://127.0.0.1:8080/voice?x=%20y", &params),
            "njTQJ96Eq6Y491/uVJW76Lcjpxk="
        );
        assert_eq!(
            twilio_signature("12345", "http://example.com/get?a=b&CallSid=CA1", &[]),
            "GZQGuHfUz0Wryjpo0Dgf3Sy3nMQ="
        );
    }

    #[test]
    fn debug_hides_auth_token() {
        let request = WebhookRequest {
            url: "http://example.com/".into(),
            method: HttpMethod::Post,
            params: vec![],
            auth_token: "secret-token-value".into(),
        };
        assert!(!format!("{request:?}").contains("secret-token-value"));
    }

    #[tokio::test]
    async fn post_is_form_encoded_and_signed() {
        let (server, seen) = recording_server().await;
        let url = format!("http://{}/voice?app=1", server.addr);
        let params = pairs(&[
            ("CallSid", "CA0123"),
            ("From", "+15550001111"),
            ("To", "+15552223333"),
            ("SpeechResult", "yes & no = maybe"),
        ]);
        let reply = client()
            .fetch(WebhookRequest {
                url: url.clone(),
                method: HttpMethod::Post,
                params: params.clone(),
                auth_token: "tok3n".into(),
            })
            .await
            .expect("server answers 200");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, "<Response><Say>Hi</Say></Response>");
        assert_eq!(
            reply.content_type.as_deref(),
            Some("text/xml; charset=utf-8")
        );

        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        let request = &seen[0];
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.headers["content-type"], FORM_CONTENT_TYPE);
        assert_eq!(request.headers["user-agent"], "TwilioProxy/1.1");
        // Validate as an app would: URL rebuilt from Host and request line, form decoded.
        let host = request.headers["host"].to_str().unwrap();
        let received_url = format!("http://{host}{}", request.uri);
        assert_eq!(received_url, url);
        let received: Vec<(String, String)> = url::form_urlencoded::parse(&request.body)
            .into_owned()
            .collect();
        assert_eq!(received, params);
        assert_eq!(
            request.headers[SIGNATURE_HEADER].to_str().unwrap(),
            twilio_signature("tok3n", &received_url, &received)
        );
    }

    #[tokio::test]
    async fn get_appends_params_to_existing_query_and_signs_full_url() {
        let (server, seen) = recording_server().await;
        let reply = client()
            .fetch(WebhookRequest {
                url: format!("http://{}/menu?step=2", server.addr),
                method: HttpMethod::Get,
                params: pairs(&[("CallSid", "CA9"), ("Digits", "4 2")]),
                auth_token: "tok3n".into(),
            })
            .await
            .expect("server answers 200");
        assert_eq!(reply.status, 200);

        let seen = seen.lock().unwrap().clone();
        let request = &seen[0];
        assert_eq!(request.method, Method::GET);
        assert!(request.body.is_empty());
        assert_eq!(
            request.uri.to_string(),
            "/menu?step=2&CallSid=CA9&Digits=4+2"
        );
        let full_url = format!("http://{}{}", server.addr, request.uri);
        assert_eq!(
            request.headers[SIGNATURE_HEADER].to_str().unwrap(),
            twilio_signature("tok3n", &full_url, &[])
        );
    }

    #[tokio::test]
    async fn non_2xx_is_a_status_error() {
        let router = Router::new().fallback(any(|| async {
            (StatusCode::INTERNAL_SERVER_ERROR, "boom")
        }));
        let server = serve(router).await;
        let url = format!("http://{}/voice", server.addr);
        let error = client()
            .fetch(WebhookRequest {
                url: url.clone(),
                method: HttpMethod::Post,
                params: vec![],
                auth_token: "t".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            error,
            WebhookError::Status {
                url: url.clone(),
                status: 500
            }
        );
        assert_eq!(
            error.to_string(),
            format!("{url} answered with HTTP status 500")
        );
        assert_eq!(
            engine::WebhookFailure::from(error),
            engine::WebhookFailure::Status(500)
        );
    }

    #[tokio::test]
    async fn refused_connection_is_a_connect_error() {
        // Bind then close, so the port is known to have no listener.
        let addr = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let error = client()
            .fetch(WebhookRequest {
                url: format!("http://{addr}/voice"),
                method: HttpMethod::Post,
                params: vec![],
                auth_token: "t".into(),
            })
            .await
            .unwrap_err();
        assert!(matches!(error, WebhookError::Connect { .. }), "{error:?}");
        assert!(
            error.to_string().starts_with("could not connect to"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        // Accepts and reads, never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            while socket.read(&mut buf).await.map(|n| n > 0).unwrap_or(false) {}
        });
        let _server = Server { addr, task };
        let config = WebhookConfig {
            total_timeout: Duration::from_millis(300),
            ..Default::default()
        };
        let client = WebhookClient::new(config).unwrap();
        let error = client
            .fetch(WebhookRequest {
                url: format!("http://{addr}/slow"),
                method: HttpMethod::Get,
                params: vec![],
                auth_token: "t".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            error,
            WebhookError::Timeout {
                url: format!("http://{addr}/slow"),
                timeout: Duration::from_millis(300)
            }
        );
        assert_eq!(
            engine::WebhookFailure::from(error),
            engine::WebhookFailure::Timeout
        );
    }

    #[tokio::test]
    async fn body_over_limit_is_rejected_with_or_without_length() {
        let router = Router::new().fallback(any(|| async { "x".repeat(2048) }));
        let server = serve(router).await;
        let config = WebhookConfig {
            max_body: 1024,
            ..Default::default()
        };
        let client = WebhookClient::new(config).unwrap();
        let request = |url: String| WebhookRequest {
            url,
            method: HttpMethod::Post,
            params: vec![],
            auth_token: "t".into(),
        };
        let error = client
            .fetch(request(format!("http://{}/", server.addr)))
            .await
            .unwrap_err();
        assert!(
            matches!(error, WebhookError::TooLarge { limit: 1024, .. }),
            "{error:?}"
        );

        // Chunked: no Content-Length, so only the streaming count can catch it.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let mut answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for _ in 0..4 {
                answer.extend_from_slice(b"200\r\n");
                answer.extend_from_slice(&[b'y'; 0x200]);
                answer.extend_from_slice(b"\r\n");
            }
            answer.extend_from_slice(b"0\r\n\r\n");
            let _ = socket.write_all(&answer).await;
        });
        let _chunked = Server { addr, task };
        let error = client
            .fetch(request(format!("http://{addr}/")))
            .await
            .unwrap_err();
        assert!(
            matches!(error, WebhookError::TooLarge { limit: 1024, .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("larger than 1024 bytes"));
    }

    #[tokio::test]
    async fn invalid_urls_are_refused_before_sending() {
        for url in ["not a url", "ftp://example.com/x", "mailto:a@example.com"] {
            let error = client()
                .fetch(WebhookRequest {
                    url: url.into(),
                    method: HttpMethod::Post,
                    params: vec![],
                    auth_token: "t".into(),
                })
                .await
                .unwrap_err();
            assert!(
                matches!(error, WebhookError::InvalidUrl { .. }),
                "{url}: {error:?}"
            );
        }
    }

    #[tokio::test]
    async fn status_callback_is_sent_in_background() {
        let (server, seen) = recording_server().await;
        let handle = client().post_status_callback(WebhookRequest {
            url: format!("http://{}/status", server.addr),
            method: HttpMethod::Post,
            params: pairs(&[("CallSid", "CA1"), ("CallStatus", "completed")]),
            auth_token: "t".into(),
        });
        handle.await.expect("callback task does not panic");
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].uri.path(), "/status");
        assert_eq!(&seen[0].body[..], b"CallSid=CA1&CallStatus=completed");

        // A failing callback only logs: the task ends normally.
        let handle = client().post_status_callback(WebhookRequest {
            url: "http://127.0.0.1:1/status".into(),
            method: HttpMethod::Post,
            params: vec![],
            auth_token: "t".into(),
        });
        handle.await.expect("a failed callback does not panic");
    }
}
