//! The HTTP server: the REST API from `api`, plus `/metrics` and `/health` for operators and tests.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::Router;

use crate::{live_api, outbound, Shared};

struct Hooks {
    shared: std::sync::Weak<Shared>,
}

impl api::ApiHooks for Hooks {
    fn create_message<'a>(
        &'a self,
        store: &'a store::Store,
        message: &'a model::MessageRecord,
    ) -> api::BoxFuture<'a, Result<(), api::HookError>> {
        Box::pin(async move {
            let Some(shared) = self.shared.upgrade() else {
                return Err(api::HookError::Internal("the node is stopping".to_owned()));
            };
            shared.outbox.create(store, message).await.map_err(|e| match e {
                crate::messaging::CreateError::Full(waiting) => api::HookError::Overloaded {
                    code: 20429,
                    message: format!("Too many messages are waiting to be sent ({waiting}): try again later"),
                },
                crate::messaging::CreateError::Store(e) => api::HookError::Internal(e),
            })
        })
    }

    fn message_canceled(&self, sid: &api::MessageSid) {
        if let Some(shared) = self.shared.upgrade() {
            shared.outbox.cancel(sid);
        }
    }

    fn smsc_status(&self) -> Vec<api::SmscStatus> {
        let Some(shared) = self.shared.upgrade() else {
            return Vec::new();
        };
        let Some(pool) = &shared.sms else {
            return Vec::new();
        };
        pool.status()
            .into_iter()
            .map(|s| {
                let (delivered, undelivered) = shared.outbox.outcomes(&s.name);
                api::SmscStatus {
                    binds_configured: u32::try_from(s.binds_configured).unwrap_or(u32::MAX),
                    binds_up: u32::try_from(s.binds_up).unwrap_or(u32::MAX),
                    queued: 0,
                    submitted: s.accepted,
                    delivered,
                    failed: s.rejected + undelivered,
                    throttled: s.throttled,
                    name: s.name,
                    host: s.host,
                    port: s.port,
                }
            })
            .collect()
    }

    fn rates_changed(&self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.rates.changed();
        }
    }

    fn proxy_changed(&self, change: api::ProxyChange) -> api::BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(shared) = self.shared.upgrade() {
                shared.proxy.apply(&shared.store, change).await;
            }
        })
    }

    fn number_created(
        &self,
        number: &model::PhoneNumberRecord,
        voice_application: Option<&model::ApplicationSid>,
    ) {
        if let Some(shared) = self.shared.upgrade() {
            shared.routing.number_saved(number, voice_application);
        }
    }

    fn number_updated(
        &self,
        number: &model::PhoneNumberRecord,
        voice_application: Option<&model::ApplicationSid>,
    ) {
        if let Some(shared) = self.shared.upgrade() {
            shared.routing.number_saved(number, voice_application);
        }
    }

    fn number_deleted(&self, phone_number: &str) {
        if let Some(shared) = self.shared.upgrade() {
            shared.routing.number_deleted(phone_number);
        }
    }

    fn application_saved(&self, application: &model::ApplicationRecord) {
        if let Some(shared) = self.shared.upgrade() {
            shared.routing.application_saved(application);
        }
    }

    fn application_deleted(&self, application: &model::ApplicationSid) {
        if let Some(shared) = self.shared.upgrade() {
            shared.routing.application_deleted(application);
        }
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

    fn queue_stats(&self, account: api::AccountSid, queue: model::QueueSid) -> api::QueueStats {
        match self.shared.upgrade() {
            Some(shared) => live_api::queue_stats(&shared, account, queue),
            None => api::QueueStats::default(),
        }
    }

    fn queue_members(
        &self,
        account: api::AccountSid,
        queue: model::QueueSid,
    ) -> api::BoxFuture<'_, Result<Vec<model::MemberRecord>, api::HookError>> {
        let shared = self.shared.upgrade();
        Box::pin(async move {
            let shared = alive(shared)?;
            Ok(live_api::queue_members(&shared, account, queue))
        })
    }

    fn update_member(
        &self,
        account: api::AccountSid,
        queue: model::QueueSid,
        member: api::MemberKey,
        update: api::MemberUpdate,
    ) -> api::BoxFuture<'_, Result<model::MemberRecord, api::HookError>> {
        let shared = self.shared.upgrade();
        Box::pin(async move {
            let shared = alive(shared)?;
            live_api::update_member(&shared, account, queue, member, update)
        })
    }

    fn update_conference(
        &self,
        account: api::AccountSid,
        conference: model::ConferenceSid,
        update: api::ConferenceUpdate,
    ) -> api::BoxFuture<'_, Result<model::ConferenceRecord, api::HookError>> {
        let shared = self.shared.upgrade();
        Box::pin(async move {
            let shared = alive(shared)?;
            live_api::update_conference(&shared, account, conference, update).await
        })
    }

    fn conference_participants(
        &self,
        account: api::AccountSid,
        conference: model::ConferenceSid,
    ) -> api::BoxFuture<'_, Result<Vec<model::ParticipantRecord>, api::HookError>> {
        let shared = self.shared.upgrade();
        Box::pin(async move {
            let shared = alive(shared)?;
            Ok(live_api::participants(&shared, account, conference).await)
        })
    }

    fn create_participant(
        &self,
        participant: api::CreateParticipant,
    ) -> api::BoxFuture<'_, Result<model::ParticipantRecord, api::HookError>> {
        let shared = self.shared.upgrade();
        Box::pin(async move {
            let shared = alive(shared)?;
            live_api::create_participant(shared, participant).await
        })
    }

    fn update_participant(
        &self,
        account: api::AccountSid,
        conference: model::ConferenceSid,
        participant: api::ParticipantKey,
        update: api::ParticipantUpdate,
    ) -> api::BoxFuture<'_, Result<model::ParticipantRecord, api::HookError>> {
        let shared = self.shared.upgrade();
        Box::pin(async move {
            let shared = alive(shared)?;
            live_api::update_participant(&shared, account, conference, participant, update).await
        })
    }

    fn remove_participant(
        &self,
        account: api::AccountSid,
        conference: model::ConferenceSid,
        participant: api::ParticipantKey,
    ) -> api::BoxFuture<'_, Result<(), api::HookError>> {
        let shared = self.shared.upgrade();
        Box::pin(async move {
            let shared = alive(shared)?;
            live_api::remove_participant(&shared, account, conference, participant).await
        })
    }
}

fn alive(shared: Option<Arc<Shared>>) -> Result<Arc<Shared>, api::HookError> {
    shared.ok_or_else(|| api::HookError::Internal("the node is stopping".into()))
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
        .route("/sip", get(crate::web::sip_websocket))
        .route(
            "/console/login",
            axum::routing::post(crate::web::console_login),
        )
        .route("/console/calls", get(crate::web::console_calls))
        .with_state(shared);
    api::router(state)
        .merge(ops)
        .merge(crate::web::file_routes())
}

pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let app = router(shared).into_make_service_with_connect_info::<crate::tls::PeerAddr>();
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "HTTP server stopped");
    }
}

/// The same over TLS (`DIALTONE_TLS_CERT`/`_KEY`).
pub async fn serve_tls(listener: crate::tls::TlsListener, shared: Arc<Shared>) {
    let app = router(shared).into_make_service_with_connect_info::<crate::tls::PeerAddr>();
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "HTTPS server stopped");
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
    let _ = writeln!(
        out,
        "# HELP dialtone_call_capacity Calls in progress beyond which new ones are refused with 503.\n\
         # TYPE dialtone_call_capacity gauge\ndialtone_call_capacity {}",
        shared.overload.capacity.max_calls
    );
    let _ = writeln!(
        out,
        "# HELP dialtone_event_loop_lag_seconds How late the runtime's timers fire.\n\
         # TYPE dialtone_event_loop_lag_seconds gauge\ndialtone_event_loop_lag_seconds {:.6}",
        shared.overload.lag().as_secs_f64()
    );
    let _ = writeln!(
        out,
        "# HELP dialtone_overload_refused_total New calls refused with 503 because the node was at capacity.\n\
         # TYPE dialtone_overload_refused_total counter"
    );
    for (reason, n) in shared.overload.refused() {
        let _ = writeln!(out, "dialtone_overload_refused_total{{reason=\"{reason}\"}} {n}");
    }
    if let Some(sms) = &shared.sms {
        sms.write_metrics(&mut out);
    }
    out
}
