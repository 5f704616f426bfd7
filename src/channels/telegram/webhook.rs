//! Webhook mode: the route Telegram posts updates to (a path on the `serve` HTTP server), the
//! secret token every update must carry, and the URL that is registered.

use std::sync::Arc;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use sha2::Digest;
use teloxide::types::Update;

use super::lanes::Lanes;
use super::update::{self, Me};
use crate::config::TelegramSettings;

/// The header Telegram sends the webhook's secret token in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// The webhook URL (its path is served) and its secret token: the configured one, checked,
/// or one derived from the token.
pub fn address(settings: &TelegramSettings, token: &str) -> anyhow::Result<(url::Url, String)> {
    let configured = settings
        .webhook_url
        .as_deref()
        .context("TELEGRAM_WEBHOOK_URL is not set")?;
    let url = url::Url::parse(configured)
        .with_context(|| format!("TELEGRAM_WEBHOOK_URL={configured} is not a URL"))?;
    anyhow::ensure!(
        url.path().len() > 1,
        "TELEGRAM_WEBHOOK_URL={configured} needs a path for the bot (https://shop.example/telegram/webhook)"
    );
    let secret = match &settings.webhook_secret {
        Some(secret) => {
            let secret = secret.expose().to_string();
            let valid = (1..=256).contains(&secret.len())
                && secret
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            anyhow::ensure!(
                valid,
                "TELEGRAM_WEBHOOK_SECRET must be 1–256 characters of A-Z, a-z, 0-9, _ and -"
            );
            secret
        }
        None => derived_secret(token),
    };
    Ok((url, secret))
}

/// `POST path`: an update with the secret goes into its chat's lane and is answered once
/// handled; anything else is refused.
pub fn router(path: &str, lanes: Arc<Lanes>, me: Me, secret: String) -> Router {
    let webhook = Arc::new(Webhook { lanes, me, secret });
    Router::new().route(path, post(receive)).with_state(webhook)
}

/// A webhook secret from the token when none is configured: stable across restarts, and
/// only the token's holder can compute it.
fn derived_secret(token: &str) -> String {
    let digest = sha2::Sha256::digest(format!("xiaoer telegram webhook\n{token}").as_bytes());
    digest.iter().take(24).map(|b| format!("{b:02x}")).collect()
}

struct Webhook {
    lanes: Arc<Lanes>,
    me: Me,
    secret: String,
}

async fn receive(
    State(webhook): State<Arc<Webhook>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let given = headers
        .get(SECRET_HEADER)
        .map(|value| value.as_bytes())
        .unwrap_or_default();
    if !same_secret(given, webhook.secret.as_bytes()) {
        tracing::warn!("a webhook request without the right secret token was refused");
        return StatusCode::UNAUTHORIZED;
    }
    let update: Update = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(error) => {
            tracing::warn!(%error, "a webhook request is not a Telegram update");
            return StatusCode::BAD_REQUEST;
        }
    };
    if let Some(incoming) = update::read(&update, &webhook.me) {
        // Telegram sends the update again unless it gets a 200: answer once it is stored (an
        // album's photo once the store holds it, see `lanes`).
        let _ = webhook.lanes.push(incoming).await;
    }
    StatusCode::OK
}

/// Compares secrets in time independent of where they differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"", b"abc"));
    }

    #[test]
    fn a_derived_secret_is_a_valid_webhook_token_and_stable() {
        let secret = derived_secret("123:abc");
        assert_eq!(secret, derived_secret("123:abc"));
        assert_ne!(secret, derived_secret("123:abd"));
        assert_eq!(secret.len(), 48);
        assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
