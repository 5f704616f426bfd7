//! The HTTP listener of `xiaoer serve`: our own accept loop over tokio's `TcpListener` and
//! hyper's HTTP/1 connections, so that no client holds the server with connections it opens
//! and leaves. It never looks at what a request asks (routes are the router's). Guarantees:
//!
//! - **Timeouts.** A request's headers must be complete within `header_timeout` of its first
//!   byte; its body within `body_timeout` of the handler's first read (a slower body is
//!   answered `408` and the connection closed); a connection waiting for its next request
//!   (or, just opened, for its first byte) is closed after `idle_timeout`.
//! - **A cap.** At most `max_connections` are open. At the cap a new connection closes the one
//!   idle the longest (no request in flight; a half-sent request head counts as idle); when
//!   every one is busy, the new connection is closed instead. A request in flight is never cut
//!   for another client. The accept loop waits for the closings it asked for, so sockets never
//!   outnumber `max_connections + CLOSING_SLACK` (+1 being accepted).
//! - **No busy loop.** An accept error such as `EMFILE` (out of file descriptors) closes the
//!   longest-idle connection and waits `ACCEPT_BACKOFF` before the next try; these and the
//!   cap's closings are logged at `warn` at most once per `LOG_EVERY`, with counts.
//! - Every request carries `ConnectInfo<SocketAddr>`, the peer's address.
//! - On shutdown nothing new is accepted; open connections finish the request in flight
//!   (within `SHUTDOWN_GRACE`) and close.
//!
//! `raise_open_file_limit` lifts the process's soft open-file limit to its hard limit at start,
//! and `default_max_connections` keeps the cap a little below it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::time::{Instant, Sleep};
use tower_service::Service as _;

use crate::config::ConnectionSettings;

/// The wait after an accept error before the next accept.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long open connections may take to finish their request at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The least time between two warnings of one kind (accept errors, closings at the cap).
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// How many connections told to close may still hold their socket before the accept loop
/// waits for them (the file descriptors in use stay below `max_connections` plus this).
pub const CLOSING_SLACK: usize = 16;
/// The automatic cap never goes above this many connections.
pub const MAX_CONNECTIONS_CEILING: usize = 16_384;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the listener enforces (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    /// The settings' limits; `max_connections = 0` becomes `default_max_connections` of the
    /// process's open-file limit.
    pub fn new(settings: &ConnectionSettings, open_file_limit: u64) -> Limits {
        let max_connections = match settings.max_connections {
            0 => default_max_connections(open_file_limit),
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        Limits {
            header_timeout: Duration::from_millis(settings.header_timeout_ms.max(1)),
            body_timeout: Duration::from_millis(settings.body_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(settings.idle_timeout_ms.max(1)),
            max_connections: max_connections.max(1),
        }
    }

    /// How often a connection looks at its own deadlines: a quarter of the shorter timeout,
    /// between 20 ms and 1 s.
    fn tick(&self) -> Duration {
        (self.header_timeout.min(self.idle_timeout) / 4)
            .clamp(Duration::from_millis(20), Duration::from_secs(1))
    }
}

/// A cap on connections for an open-file limit: an eighth of it (at least 64) is kept for the
/// store, the knowledge files, Telegram and the logs; never more than
/// `MAX_CONNECTIONS_CEILING`, never fewer than 8.
pub fn default_max_connections(open_file_limit: u64) -> usize {
    let reserve = (open_file_limit / 8).max(64);
    let cap = open_file_limit.saturating_sub(reserve);
    usize::try_from(cap)
        .unwrap_or(usize::MAX)
        .clamp(8, MAX_CONNECTIONS_CEILING)
}

/// Raises the soft open-file limit to the hard limit; returns the soft limit now in force.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // `rlim_t` is not `u64` on every Unix.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // An unlimited hard limit still has the kernel's ceiling (fs.nr_open, 2^20 by default).
    let target = if limit.rlim_max == libc::RLIM_INFINITY {
        1 << 20
    } else {
        limit.rlim_max
    };
    if limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_cur < target {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(target as u64);
        }
    }
    Ok(limit.rlim_cur as u64)
}

#[cfg(not(unix))]
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    Ok(512)
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let tracker = Arc::new(Tracker::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut accept_errors = Occasional::default();
    let mut closed_at_cap = Occasional::default();
    let mut refused_at_cap = Occasional::default();
    tokio::pin!(shutdown);
    loop {
        // Closings asked for at the cap happen in the connections' tasks: let them catch up.
        tracker
            .wait_below(limits.max_connections.saturating_add(CLOSING_SLACK))
            .await;
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            // The client gave up between connecting and being accepted: nothing to do.
            Err(error) if is_the_clients(&error) => continue,
            Err(error) => {
                let shed = tracker.close_longest_idle();
                accept_errors.warn(|n| {
                    tracing::warn!(%error, times = n, closed_idle = shed, "accepting a connection failed; waiting a moment");
                });
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let (id, activity) = match tracker.admit() {
            Admitted::Free(id, activity) => (id, activity),
            Admitted::ClosedIdle(id, activity) => {
                let cap = limits.max_connections;
                closed_at_cap.warn(|n| {
                    tracing::warn!(cap, times = n, "at the connection cap: closed the connection idle the longest for a new one");
                });
                (id, activity)
            }
            Admitted::Refused => {
                let cap = limits.max_connections;
                refused_at_cap.warn(|n| {
                    tracing::warn!(
                        cap,
                        times = n,
                        "at the connection cap with every connection busy: closed a new one"
                    );
                });
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            id,
            peer,
            activity,
            tracker: tracker.clone(),
            limits,
        };
        tokio::spawn(connection.run(stream, router.clone(), stopping.clone()));
    }
    drop(listener);
    let _ = stop.send(true);
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while tracker.open() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Accept errors that concern one client only, not the server.
fn is_the_clients(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    )
}

/// Runs a closure at most once per `LOG_EVERY`, with how many times it was due meanwhile.
#[derive(Default)]
struct Occasional {
    last: Option<Instant>,
    due: u64,
}

impl Occasional {
    fn warn(&mut self, log: impl FnOnce(u64)) {
        self.due += 1;
        if self.last.is_none_or(|last| last.elapsed() >= LOG_EVERY) {
            log(self.due);
            self.last = Some(Instant::now());
            self.due = 0;
        }
    }
}

/// The open connections and what each is doing. A connection told to close counts until its
/// task has ended and its socket is closed, so the accept loop can wait for the closings it
/// asked for instead of running past the file limit (`CLOSING_SLACK`).
struct Tracker {
    next_id: AtomicU64,
    open: Mutex<Open>,
    max: usize,
    epoch: Instant,
    /// Signalled each time a connection's task ends.
    ended: Notify,
}

#[derive(Default)]
struct Open {
    connections: HashMap<u64, Arc<Activity>>,
    /// How many of them were told to close and have not ended yet.
    closing: usize,
}

enum Admitted {
    Free(u64, Arc<Activity>),
    /// Admitted after closing the connection idle the longest.
    ClosedIdle(u64, Arc<Activity>),
    Refused,
}

impl Tracker {
    fn new(max: usize) -> Tracker {
        Tracker {
            next_id: AtomicU64::new(0),
            open: Mutex::new(Open::default()),
            max,
            epoch: Instant::now(),
            ended: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections whose socket is still open, closing ones included.
    fn open(&self) -> usize {
        self.lock().connections.len()
    }

    /// Waits (at most a second) until fewer than `limit` sockets are open.
    async fn wait_below(&self, limit: usize) {
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.open() >= limit && Instant::now() < deadline {
            let _ = tokio::time::timeout(Duration::from_millis(50), self.ended.notified()).await;
        }
    }

    /// Registers a new connection, closing the longest-idle one at the cap.
    fn admit(&self) -> Admitted {
        let mut open = self.lock();
        let closed = open.connections.len() - open.closing >= self.max;
        if closed && close_longest_idle(&mut open).is_none() {
            return Admitted::Refused;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new(self.epoch));
        open.connections.insert(id, activity.clone());
        if closed {
            Admitted::ClosedIdle(id, activity)
        } else {
            Admitted::Free(id, activity)
        }
    }

    /// Closes the connection idle the longest, if any is idle; whether one was.
    fn close_longest_idle(&self) -> bool {
        close_longest_idle(&mut self.lock()).is_some()
    }

    /// A connection's task has ended.
    fn forget(&self, id: u64) {
        let mut open = self.lock();
        if let Some(activity) = open.connections.remove(&id) {
            if activity.told_to_close.load(Ordering::SeqCst) {
                open.closing -= 1;
            }
        }
        drop(open);
        self.ended.notify_one();
    }
}

fn close_longest_idle(open: &mut Open) -> Option<u64> {
    let (id, activity) = open
        .connections
        .iter()
        .filter(|(_, activity)| {
            activity.in_flight.load(Ordering::SeqCst) == 0
                && !activity.told_to_close.load(Ordering::SeqCst)
        })
        .min_by_key(|(_, activity)| activity.idle_since.load(Ordering::SeqCst))?;
    let id = *id;
    activity.told_to_close.store(true, Ordering::SeqCst);
    activity.close.notify_one();
    open.closing += 1;
    Some(id)
}

/// What one connection is doing; times in milliseconds since the tracker's epoch.
struct Activity {
    epoch: Instant,
    /// Requests handed to the router whose response has not been written yet (0 or 1).
    in_flight: AtomicUsize,
    /// Since when nothing has been in flight.
    idle_since: AtomicU64,
    /// When the first byte of the next request came, plus one; 0 while none has.
    head_since: AtomicU64,
    /// Tells the connection to close at once (the cap needs its place).
    close: Notify,
    /// It was told to (set under the tracker's lock).
    told_to_close: AtomicBool,
}

impl Activity {
    fn new(epoch: Instant) -> Activity {
        let activity = Activity {
            epoch,
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            close: Notify::new(),
            told_to_close: AtomicBool::new(false),
        };
        activity.idle_since.store(activity.now(), Ordering::SeqCst);
        activity
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Bytes came from the client: the first while idle starts a request head.
    fn read_some(&self) {
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            let _ = self.head_since.compare_exchange(
                0,
                self.now() + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
    }

    /// Why the connection has overstayed, if it has.
    fn overdue(&self, limits: &Limits) -> Option<&'static str> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let now = self.now();
        let waited = |since: u64| Duration::from_millis(now.saturating_sub(since));
        match self.head_since.load(Ordering::SeqCst) {
            0 => (waited(self.idle_since.load(Ordering::SeqCst)) > limits.idle_timeout)
                .then_some("idle too long"),
            head => {
                (waited(head - 1) > limits.header_timeout).then_some("request headers too slow")
            }
        }
    }
}

/// A request in flight on a connection, until its response has been written (or dropped).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        activity.head_since.store(0, Ordering::SeqCst);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        activity.idle_since.store(activity.now(), Ordering::SeqCst);
        activity.head_since.store(0, Ordering::SeqCst);
        activity.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One accepted connection.
struct Connection {
    id: u64,
    peer: SocketAddr,
    activity: Arc<Activity>,
    tracker: Arc<Tracker>,
    limits: Limits,
}

impl Connection {
    async fn run(self, stream: TcpStream, router: Router, mut stopping: watch::Receiver<bool>) {
        let io = TokioIo::new(Watched {
            stream,
            activity: self.activity.clone(),
        });
        let (peer, activity, body_timeout) =
            (self.peer, self.activity.clone(), self.limits.body_timeout);
        let service = hyper::service::service_fn(move |request| {
            handle(
                request,
                router.clone(),
                peer,
                activity.clone(),
                body_timeout,
            )
        });
        let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
        tokio::pin!(connection);
        let mut ticks = tokio::time::interval(self.limits.tick());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutting_down = false;
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(peer = %self.peer, %error, "connection ended with an error");
                    }
                    break;
                }
                () = self.activity.close.notified() => break,
                _ = stopping.changed(), if !shutting_down => {
                    shutting_down = true;
                    connection.as_mut().graceful_shutdown();
                }
                _ = ticks.tick() => {
                    if let Some(why) = self.activity.overdue(&self.limits) {
                        tracing::debug!(peer = %self.peer, why, "closing a connection");
                        break;
                    }
                }
            }
        }
        self.tracker.forget(self.id);
    }
}

/// One request: to the router with the peer's address and a deadline on its body.
async fn handle(
    request: Request<Incoming>,
    mut router: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
    body_timeout: Duration,
) -> Result<Response<Tracked>, Infallible> {
    let in_flight = InFlight::start(&activity);
    let too_slow = Arc::new(AtomicBool::new(false));
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(ConnectInfo(peer));
    let body = Body::new(Deadline {
        inner: body,
        limit: body_timeout,
        deadline: None,
        too_slow: too_slow.clone(),
    });
    let response = match router.call(Request::from_parts(parts, body)).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let response = if too_slow.load(Ordering::SeqCst) {
        body_too_slow(body_timeout)
    } else {
        response
    };
    Ok(response.map(|body| Tracked {
        inner: body,
        _in_flight: in_flight,
    }))
}

/// `408`, and the connection closes: the body did not arrive in time.
fn body_too_slow(limit: Duration) -> Response<Body> {
    let message = format!(
        "the request body did not arrive within {:.1} s",
        limit.as_secs_f64()
    );
    let mut response = (
        StatusCode::REQUEST_TIMEOUT,
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request body that fails once `limit` has passed since the handler first read it.
struct Deadline {
    inner: Incoming,
    limit: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
    too_slow: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTooSlow;

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let limit = this.limit;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                this.too_slow.store(true, Ordering::SeqCst);
                Poll::Ready(Some(Err(Box::new(BodyTooSlow))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request in flight until it has been written.
struct Tracked {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's socket, telling its `Activity` when bytes come in.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read_some();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(open_file_limit: u64, expect: usize) {
        assert_eq!(default_max_connections(open_file_limit), expect);
    }

    #[test]
    fn the_automatic_cap_leaves_room_below_the_open_file_limit() {
        check(1024, 896);
        check(256, 192);
        check(100, 36);
        check(20, 8);
        check(1 << 20, MAX_CONNECTIONS_CEILING);
    }

    #[tokio::test]
    async fn at_the_cap_the_longest_idle_connection_makes_room_and_a_busy_one_never_does() {
        let tracker = Tracker::new(2);
        let Admitted::Free(first, first_activity) = tracker.admit() else {
            panic!("room for the first");
        };
        let Admitted::Free(_, second_activity) = tracker.admit() else {
            panic!("room for the second");
        };
        let busy = InFlight::start(&second_activity);
        assert!(matches!(tracker.admit(), Admitted::ClosedIdle(..)));
        assert!(
            first_activity.told_to_close.load(Ordering::SeqCst),
            "the idle one goes"
        );
        // Told to close: its `notified` completes at once. It counts until its task ends.
        first_activity.close.notified().await;
        assert_eq!(tracker.open(), 3);
        tracker.forget(first);
        assert_eq!(tracker.open(), 2);
        // Now one busy and one new (idle) connection: the new one goes, the busy one stays.
        let Admitted::ClosedIdle(_, fourth_activity) = tracker.admit() else {
            panic!("the idle third makes room");
        };
        let _also_busy = InFlight::start(&fourth_activity);
        assert!(matches!(tracker.admit(), Admitted::Refused));
        drop(busy);
        assert!(matches!(tracker.admit(), Admitted::ClosedIdle(..)));
    }

    #[test]
    fn a_connection_is_overdue_after_its_idle_or_header_time_never_while_busy() {
        let limits = Limits {
            header_timeout: Duration::from_millis(100),
            body_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_millis(300),
            max_connections: 10,
        };
        let epoch = Instant::now() - Duration::from_secs(10);
        let activity = Arc::new(Activity::new(epoch));
        assert_eq!(activity.overdue(&limits), None, "just opened");
        activity
            .idle_since
            .store(activity.now() - 400, Ordering::SeqCst);
        assert_eq!(activity.overdue(&limits), Some("idle too long"));
        activity
            .head_since
            .store(activity.now() - 50 + 1, Ordering::SeqCst);
        assert_eq!(activity.overdue(&limits), None, "a head started 50 ms ago");
        activity
            .head_since
            .store(activity.now() - 150 + 1, Ordering::SeqCst);
        assert_eq!(activity.overdue(&limits), Some("request headers too slow"));
        let in_flight = InFlight::start(&activity);
        activity.idle_since.store(0, Ordering::SeqCst);
        assert_eq!(activity.overdue(&limits), None, "a request in flight");
        drop(in_flight);
        assert_eq!(
            activity.overdue(&limits),
            None,
            "its response just went out"
        );
    }
}
