//! A TwiML webhook that answers every request at once with the same document, so a benchmark
//! measures the voice server and not the customer's app.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::Router;

#[derive(clap::Args, Debug)]
pub struct WebhookArgs {
    /// Address to serve on (loopback).
    #[arg(long, default_value = "127.0.0.1:8088")]
    listen: SocketAddr,
    /// Seconds of the `<Pause>` in the default document.
    #[arg(long, default_value_t = 2)]
    pause: u32,
    /// Serve this document instead of the Pause.
    #[arg(long)]
    twiml: Option<String>,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

pub fn document(args: &WebhookArgs) -> String {
    args.twiml.clone().unwrap_or_else(|| {
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Pause length=\"{}\"/></Response>", args.pause)
    })
}

pub fn app(body: Arc<str>, served: Arc<AtomicU64>) -> Router {
    Router::new().fallback(move || {
        let body = body.clone();
        let served = served.clone();
        async move {
            served.fetch_add(1, Ordering::Relaxed);
            ([(CONTENT_TYPE, "text/xml")], body.to_string()).into_response()
        }
    })
}

pub fn serve(args: WebhookArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let body: Arc<str> = document(&args).into();
    let served = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("bind {}", args.listen))?;
        eprintln!("sipload webhook: serving on http://{}", listener.local_addr()?);
        axum::serve(listener, app(body, served.clone()))
            .with_graceful_shutdown(async {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
                }
            })
            .await?;
        eprintln!("sipload webhook: served {} requests", served.load(Ordering::Relaxed));
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::IntoFuture;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn answers_any_path_with_the_pause_document() {
        let args = WebhookArgs { listen: "127.0.0.1:0".parse().unwrap(), pause: 2, twiml: None, threads: 1 };
        let served = Arc::new(AtomicU64::new(0));
        let listener = tokio::net::TcpListener::bind(args.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(axum::serve(listener, app(document(&args).into(), served.clone())).into_future());
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /voice HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\nConnection: close\r\n\r\nFrom=%2B")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        server.abort();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.contains("content-type: text/xml"), "{out}");
        assert!(out.ends_with("<Response><Pause length=\"2\"/></Response>"), "{out}");
        assert_eq!(served.load(Ordering::Relaxed), 1);
    }
}
