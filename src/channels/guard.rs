//! The HTTP API's defences against hostile use: the client's address, throttles of wrong
//! guesses per address (chat ids that lead nowhere, wrong agent tokens) over the pure
//! `throttle` module, and the headers every response carries. It never logs a token or a chat
//! id, only the address and the count.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::Response;

use crate::channels::http::ApiError;
use crate::throttle::{client_key, Limit, Throttle};

/// Most addresses each throttle tracks at once (a few MB at worst).
const MAX_TRACKED_ADDRESSES: usize = 100_000;

/// Reads of chats that do not exist: 20 a minute, then the address waits 5 minutes.
pub const CHAT_GUESSES: Limit = Limit {
    failures: 20,
    window_ms: 60_000,
    block_ms: 300_000,
};

/// Wrong agent tokens: 10 a minute, then the address waits a minute.
pub const SIGN_INS: Limit = Limit {
    failures: 10,
    window_ms: 60_000,
    block_ms: 60_000,
};

/// The address a request came from: the TCP peer (the server is served with
/// `into_make_service_with_connect_info`), or 0.0.0.0 where none is known (a router driven
/// directly, as in tests).
pub fn client_address(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// The address the request came from (`client_address`), as an extractor.
pub struct ClientAddress(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(client_address(parts)))
    }
}

/// One kind of wrong guess, counted per client address.
#[derive(Debug)]
pub struct Guard {
    /// What is being guessed, for the log and the 429's message (`wrong agent tokens`).
    what: &'static str,
    throttle: Mutex<Throttle<IpAddr>>,
}

impl Guard {
    pub fn new(what: &'static str, limit: Limit) -> Guard {
        Guard {
            what,
            throttle: Mutex::new(Throttle::new(limit, MAX_TRACKED_ADDRESSES)),
        }
    }

    /// 429 while `address` is blocked.
    pub fn admit(&self, address: IpAddr, now_ms: i64) -> Result<(), ApiError> {
        let blocked = self.lock().blocked(&client_key(address), now_ms);
        match blocked {
            Some(wait_ms) => {
                tracing::debug!(%address, what = self.what, "refused while blocked");
                Err(self.too_many(wait_ms))
            }
            None => Ok(()),
        }
    }

    /// Counts a wrong guess from `address`; 429 once it has made too many.
    pub fn fail(&self, address: IpAddr, now_ms: i64) -> Result<(), ApiError> {
        let blocked = self.lock().fail(&client_key(address), now_ms);
        match blocked {
            Some(wait_ms) => {
                tracing::warn!(%address, what = self.what, wait_s = seconds(wait_ms), "too many wrong guesses: address blocked");
                Err(self.too_many(wait_ms))
            }
            None => Ok(()),
        }
    }

    fn too_many(&self, wait_ms: i64) -> ApiError {
        let retry_after_s = seconds(wait_ms);
        ApiError::TooManyRequests {
            message: format!(
                "too many {} from your address; try again in {retry_after_s} s",
                self.what
            ),
            retry_after_s,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Throttle<IpAddr>> {
        self.throttle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whole seconds to wait, rounded up, at least 1.
fn seconds(wait_ms: i64) -> u64 {
    u64::try_from((wait_ms + 999) / 1000).unwrap_or(1).max(1)
}

/// The API's throttles.
#[derive(Debug)]
pub struct Guards {
    /// Reads of chats that do not exist.
    pub chat_guesses: Guard,
    /// Wrong agent tokens.
    pub sign_ins: Guard,
}

impl Default for Guards {
    fn default() -> Guards {
        Guards {
            chat_guesses: Guard::new("reads of chats that do not exist", CHAT_GUESSES),
            sign_ins: Guard::new("wrong agent tokens", SIGN_INS),
        }
    }
}

/// Headers of every response: no content-type sniffing, no referrer sent onwards.
pub async fn common_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Responses that carry personal data (the agents' API) are never cached.
pub async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The console page's policy: its own script and styles only (no inline script), images from
/// itself and https, requests only to itself, never inside a frame.
pub const CONSOLE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: https:; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_whole_seconds_rounded_up() {
        assert_eq!(seconds(1), 1);
        assert_eq!(seconds(1000), 1);
        assert_eq!(seconds(1001), 2);
        assert_eq!(seconds(300_000), 300);
        assert_eq!(seconds(0), 1);
    }

    #[test]
    fn a_guard_blocks_an_address_not_its_neighbours() {
        let guard = Guard::new("tries", SIGN_INS);
        let (me, you): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..SIGN_INS.failures {
            assert!(guard.fail(me, 0).is_ok());
        }
        assert!(matches!(
            guard.fail(me, 0),
            Err(ApiError::TooManyRequests {
                retry_after_s: 60,
                ..
            })
        ));
        assert!(guard.admit(me, 59_000).is_err());
        assert!(guard.admit(you, 59_000).is_ok());
        assert!(guard.admit(me, 60_000).is_ok());
    }
}
