//! The access token check with its key looked up in the store: the one part of
//! [`crate::access_token`] that does I/O.

use store::Store;

use super::{parse, verify, AccessClaims, TokenError};

/// [`parse`]s `token`, looks up the key it names ([`Store::api_key_signing_secret`], not cached:
/// once a key is deleted its tokens fail) and [`verify`]s it at `now` (unix seconds).
pub async fn verify_with_store(
    store: &Store,
    token: &str,
    now: i64,
) -> Result<AccessClaims, TokenError> {
    let parsed = parse(token)?;
    let key = store
        .api_key_signing_secret(parsed.key_sid())
        .await
        .map_err(TokenError::Store)?;
    verify(&parsed, key.as_ref(), now)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{header, Method, Request, StatusCode};
    use base64::Engine;
    use http_body_util::BodyExt;
    use model::{AccountSid, ApiKeySid};
    use tower::ServiceExt;

    use super::*;
    use crate::access_token::{mint, VoiceGrant};
    use crate::{ApiState, NoHooks};

    const TOKEN: &str = "main-auth-token-0123456789abcdef";

    async fn call(
        state: &ApiState,
        account: &AccountSid,
        method: Method,
        uri: &str,
        form: &str,
    ) -> (StatusCode, serde_json::Value) {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{account}:{TOKEN}"));
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Basic {basic}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form.to_owned()))
            .unwrap();
        let resp = crate::router(state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    #[tokio::test]
    async fn keys_made_through_the_api_verify_their_tokens_until_deleted() {
        let dir = std::env::temp_dir().join(format!("dialtone-token-{}", AccountSid::generate()));
        let store = ::store::testing::open_fresh(&dir.join("db")).await.unwrap();
        let (main, other) = (AccountSid::generate(), AccountSid::generate());
        store.ensure_account(&main, TOKEN, "Main").await.unwrap();
        store
            .ensure_account(&other, "other-auth-token-0123456789", "Other")
            .await
            .unwrap();
        let state = ApiState {
            store: store.clone(),
            public_url: "http://127.0.0.1".into(),
            recordings_dir: dir.join("recordings"),
            hooks: Arc::new(NoHooks),
        };
        let keys = format!("/2010-04-01/Accounts/{main}/Keys.json");
        let (status, key) = call(&state, &main, Method::POST, &keys, "FriendlyName=browsers").await;
        assert_eq!(status, StatusCode::CREATED, "{key}");
        let sid: ApiKeySid = key["sid"].as_str().unwrap().parse().unwrap();
        let secret = key["secret"].as_str().unwrap();

        let now = chrono::Utc::now().timestamp();
        let grant = VoiceGrant {
            incoming_allow: true,
            ..VoiceGrant::default()
        };
        let token = mint(&sid, secret, &main, "alice", &grant, 3600, now);
        let claims = verify_with_store(&store, &token, now).await.unwrap();
        assert_eq!(
            (claims.account_sid, claims.key_sid, claims.identity.as_str()),
            (main, sid, "alice")
        );
        // Signed with the key's secret, but for another account.
        let elsewhere = mint(&sid, secret, &other, "alice", &grant, 3600, now);
        assert_eq!(
            verify_with_store(&store, &elsewhere, now)
                .await
                .unwrap_err()
                .code(),
            20103
        );
        let unknown = mint(
            &ApiKeySid::generate(),
            secret,
            &main,
            "alice",
            &grant,
            3600,
            now,
        );
        assert_eq!(
            verify_with_store(&store, &unknown, now)
                .await
                .unwrap_err()
                .code(),
            20103
        );
        assert_eq!(
            verify_with_store(&store, "junk", now)
                .await
                .unwrap_err()
                .code(),
            20101
        );

        let (status, _) = call(
            &state,
            &main,
            Method::DELETE,
            &format!("/2010-04-01/Accounts/{main}/Keys/{sid}.json"),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(
            verify_with_store(&store, &token, now)
                .await
                .unwrap_err()
                .code(),
            20103,
            "revoked"
        );

        // A store that cannot open the secrets says so instead of judging the token.
        let (status, key) = call(&state, &main, Method::POST, &keys, "").await;
        assert_eq!(status, StatusCode::CREATED);
        let sid: ApiKeySid = key["sid"].as_str().unwrap().parse().unwrap();
        let token = mint(
            &sid,
            key["secret"].as_str().unwrap(),
            &main,
            "alice",
            &grant,
            3600,
            now,
        );
        let foreign = store
            .clone()
            .with_sealing_key(::store::SealingKey::generate());
        let err = verify_with_store(&foreign, &token, now).await.unwrap_err();
        assert!(matches!(err, TokenError::Store(_)), "{err:?}");
        assert_eq!(err.code(), 20500);
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
