//! The HTTP server: the REST API from `api`, plus `/metrics` and `/health` for operators and tests.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::Router;

use crate::{outbound, Shared};

struct Hooks {
    shared: std::sync::Weak<Shared>,
}

impl api::ApiHooks for Hooks {
    fn numbers_changed(&self) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        shared.routing.schedule_reload(&shared.store);
    }

    fn create_call(
        &self,
        call: api::CreateCall,
    ) -> api::BoxFuture<'_, Result<api::CallRecord, api::HookError>> {
        let shared = self.shared.upgrade();
        Box::pin(async move {
            let shared =
                shared.ok_or_else(|| api::HookError::Internal("the node is stopping".into()))?;
            outbound::create(shared, call).await
        })
    }

    fn update_call(
        &self,
        account: api::AccountSid,
        sid: api::CallSid,
        update: api::CallUpdate,
    ) -> api::BoxFuture<'_, Result<api::CallRecord, api::HookError>> {
        let shared = self.shared.upgrade();
        Box::pin(async move {
            let shared =
                shared.ok_or_else(|| api::HookError::Internal("the node is stopping".into()))?;
            outbound::update(shared, account, sid, update).await
        })
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    let state = api::ApiState {
        store: shared.store.clone(),
        public_url: shared.config.public_url.clone(),
        recordings_dir: shared.config.recordings_dir.clone(),
        hooks: Arc::new(Hooks {
            shared: Arc::downgrade(&shared),
        }),
    };
    let ops = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok" }))
        .with_state(shared);
    api::router(state).merge(ops)
}

pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    if let Err(e) = axum::serve(listener, router(shared)).await {
        tracing::error!(error = %e, "HTTP server stopped");
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> String {
    let mut out = String::new();
    let gauges = [
        (
            "dialtone_active_calls",
            "Calls in progress on this node.",
            shared.metrics.active_calls.load(Ordering::Relaxed),
        ),
        (
            "dialtone_rtp_ports_in_use",
            "RTP and RTCP ports bound.",
            shared.media.ports_in_use() as i64,
        ),
        (
            "dialtone_media_streams",
            "Media streams open.",
            shared.media.active_streams() as i64,
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    out
}
