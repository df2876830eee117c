//! The upstream side: one keep-alive pool per URL of each `[[upstreams]]`
//! entry (see [`super::pool`]), round-robin over the URLs, connect and
//! response-header timeouts.
//!
//! A target that fails to connect is skipped for a while (1 s, doubling per
//! consecutive failure up to 30 s); when its pause ends one request probes it
//! while the others keep going elsewhere. A request whose connect failed has
//! sent nothing, so it is re-sent once to another target, whatever its method,
//! as long as its body was never read (see [`ReplayBody`]).
//!
//! https targets: rustls with the system roots plus the upstream's `tls_ca`,
//! HTTP/1.1 only (ALPN `http/1.1`); h2 upstreams are not supported, since an
//! upstream URL has no way to ask for them yet.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HOST, TRANSFER_ENCODING};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

use super::pool::{self, BodyProgress, Conn, Deadline, ExchangeError, Pool, UpstreamBody};
use crate::config::UpstreamSettings;
use crate::error::GatewayError;
use crate::stall::Stall;

/// First pause after a connect failure; doubles per consecutive failure.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest pause: a target that came back is found within this.
const BACKOFF_CAP: Duration = Duration::from_secs(30);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One named upstream and its connection pool.
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    targets: Vec<Target>,
    next: AtomicUsize,
    timeout: Duration,
    /// How long a probe of a paused target keeps others off it.
    probe_hold: Duration,
    /// Zero point of the targets' `paused_until` clocks.
    epoch: Instant,
    connector: HttpsConnector<HttpConnector>,
    /// What it was built from: a reload with the same settings keeps this
    /// pool (warm connections, skip state) instead of building a new one.
    built_from: (UpstreamSettings, Duration),
}

/// Why an attempt got no response.
enum Failure {
    /// No connection (refused, connect timeout, TLS handshake): nothing was sent.
    Connect,
    /// The connection was made; the request may have been (partly) sent.
    /// What the client is told ([`Upstream::exchange_failed`]).
    Exchange(GatewayError),
    /// No response head by the deadline.
    TimedOut,
}

impl Failure {
    /// What the client is told: 504 for a deadline, 502 for a connect, and
    /// for an exchange what [`Upstream::exchange_failed`] found (400 or 408
    /// when the client's own body failed, else 502).
    fn answer(self) -> GatewayError {
        match self {
            Failure::TimedOut => GatewayError::UpstreamTimeout,
            Failure::Connect => GatewayError::UpstreamUnavailable,
            Failure::Exchange(answer) => answer,
        }
    }
}

/// One URL of an upstream and whether it is being skipped.
#[derive(Debug)]
struct Target {
    scheme: Scheme,
    authority: Authority,
    /// Consecutive connect failures; 0 = healthy.
    failures: AtomicU32,
    /// Milliseconds after `Upstream::epoch` until which the target is skipped.
    paused_until: AtomicU64,
    /// Its idle keep-alive connections.
    pool: Arc<Pool>,
}

impl Upstream {
    /// Builds the pool; no connection is opened until the first request.
    pub fn new(settings: &UpstreamSettings, idle_timeout: Duration) -> Upstream {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(settings.connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(client_tls(settings))
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let targets = settings
            .urls
            .iter()
            .filter_map(|u| {
                Some(Target {
                    scheme: u.scheme()?.clone(),
                    authority: u.authority()?.clone(),
                    failures: AtomicU32::new(0),
                    paused_until: AtomicU64::new(0),
                    pool: Arc::new(Pool::new(idle_timeout)),
                })
            })
            .collect();
        Upstream {
            name: settings.name.clone(),
            targets,
            next: AtomicUsize::new(0),
            timeout: settings.timeout,
            probe_hold: settings.connect_timeout + Duration::from_millis(500),
            epoch: Instant::now(),
            built_from: (settings.clone(), idle_timeout),
            connector,
        }
    }

    /// Points `req` at the next target (keeping its path and query) and sends it
    /// as HTTP/1.1, the client's Host (HTTP/2: `:authority`) unchanged. A connect
    /// failure is re-sent once to another target; then 502. No response headers
    /// within `timeout` of `sent` or, for a request with a body, of the body's
    /// last progress (see [`Deadline`]), retry included → 504.
    ///
    /// The common case, an idle pooled connection, is sent here and now; the
    /// returned future then holds little more than hyper's response future.
    /// Everything else (a connect, a re-send) is boxed inside it. An `async fn`
    /// would carry the request twice and the state of every branch, and each
    /// level above would copy all of it as it starts (BENCHMARKS.md).
    pub fn send(
        self: Arc<Self>,
        req: Request<Incoming>,
        sent: Instant,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, GatewayError>> + Send + 'static {
        let (mut parts, body) = req.into_parts();
        // Only a URI with an authority (HTTP/2's) has a Host to give: an
        // origin-form one skips the lookup.
        if let Some(authority) = parts.uri.authority() {
            if !parts.headers.contains_key(HOST) {
                if let Ok(value) = HeaderValue::from_str(authority.as_str()) {
                    parts.headers.insert(HOST, value);
                }
            }
        }
        // HTTP/1.1 whatever the client spoke: an HTTP/1.0 request line would
        // cost the pooled connection its keep-alive.
        let http2 = parts.version > Version::HTTP_11;
        parts.version = Version::HTTP_11;
        // A chunked HTTP/1.1 body goes on chunked whatever the method: left
        // to itself, hyper sends a GET or HEAD without it. (An HTTP/2 GET
        // whose HEADERS do not end the stream usually has no body at all, its
        // end coming in an empty DATA frame: hyper's choice, bodiless, stays.)
        let has_body = !body.is_end_stream();
        if !http2 && has_body && body.size_hint().exact().is_none() {
            parts.headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        }
        // HTTP/1.1 to an origin server: origin-form; Host carries the rest.
        // (A URI without scheme or authority is in origin-form already.)
        if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
            let path = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
            parts.uri = Uri::from(path);
        }
        // A request with a body: the wait for its response head runs from
        // the body's last progress (see `Deadline`).
        let upload = has_body.then(|| BodyProgress::new(tokio::time::Instant::from_std(sent), self.timeout));
        let Some(first) = self.pick(None) else {
            return Sending::Other {
                fut: Box::pin(std::future::ready(Err(GatewayError::UpstreamUnavailable))),
            };
        };
        let target = &self.targets[first];
        match target.pool.checkout(sent) {
            Some(conn) => {
                let req = Request::from_parts(parts, ReplayBody::once(body, self.watch(&upload)));
                let response = pool::exchange(conn, &target.pool, req, self.deadline(sent, &upload));
                Sending::Pooled { upstream: self, target: first, sent, response }
            }
            None => Sending::Other { fut: self.send_from_timed(first, parts, body, sent, upload) },
        }
    }

    /// When the response head of a request sent at `sent` is due: `timeout`
    /// later, or for one with a body (`upload`), `timeout` after it last moved.
    fn deadline(&self, sent: Instant, upload: &Option<BodyProgress>) -> Deadline {
        Deadline { due: tokio::time::Instant::from_std(sent + self.timeout), upload: upload.clone() }
    }

    /// The stall timer and progress mark for a request body being sent.
    fn watch(&self, upload: &Option<BodyProgress>) -> Option<Box<UploadWatch>> {
        let progress = upload.clone()?;
        Some(Box::new(UploadWatch { progress, stall: Stall::default(), limit: self.built_from.1 }))
    }

    /// [`Upstream::send_from`], boxed, with the whole of it (a connect
    /// included) bounded by the response-head deadline.
    fn send_from_timed(
        self: Arc<Self>,
        first: usize,
        parts: http::request::Parts,
        body: Incoming,
        sent: Instant,
        upload: Option<BodyProgress>,
    ) -> Boxed {
        let mut deadline = self.deadline(sent, &upload);
        let fut = self.send_from(first, parts, body, sent, upload);
        Box::pin(async move {
            tokio::pin!(fut);
            loop {
                if let Ok(result) = tokio::time::timeout_at(deadline.due, &mut fut).await {
                    return result;
                }
                if !deadline.extend(tokio::time::Instant::now()) {
                    return Err(GatewayError::UpstreamTimeout);
                }
            }
        })
    }

    /// The request's way when no idle connection took it at once: to target
    /// `first`, and on a connect failure once to another target.
    async fn send_from(
        self: Arc<Self>,
        first: usize,
        parts: http::request::Parts,
        body: Incoming,
        sent: Instant,
        upload: Option<BodyProgress>,
    ) -> Result<Response<UpstreamBody>, GatewayError> {
        if self.targets.len() < 2 {
            // Nowhere to re-send: no copy of the head, no shared slot.
            let req = Request::from_parts(parts, ReplayBody::once(body, self.watch(&upload)));
            return self.attempt(first, req, sent, &upload).await.map_err(Failure::answer);
        }
        let slot = Arc::new(Mutex::new(Some(body)));
        let req = Request::from_parts(parts.clone(), ReplayBody::new(slot.clone(), self.watch(&upload)));
        match self.attempt(first, req, sent, &upload).await {
            Ok(resp) => return Ok(resp),
            Err(Failure::Connect) => {}
            Err(failure) => return Err(failure.answer()),
        }
        // Nothing reached the upstream; re-send only a body nobody has read.
        if slot.lock().unwrap_or_else(PoisonError::into_inner).is_none() {
            return Err(GatewayError::UpstreamUnavailable);
        }
        let second = self.pick(Some(first)).ok_or(GatewayError::UpstreamUnavailable)?;
        let req = Request::from_parts(parts, ReplayBody::new(slot, self.watch(&upload)));
        self.attempt(second, req, sent, &upload).await.map_err(Failure::answer)
    }

    /// Sends `req` to target `i` over a pooled connection (or a new one) and
    /// keeps the target's pause state. A pooled connection found closed
    /// before the request left is replaced, as hyper-util's client does.
    async fn attempt(
        &self,
        i: usize,
        mut req: Request<ReplayBody>,
        sent: Instant,
        upload: &Option<BodyProgress>,
    ) -> Result<Response<UpstreamBody>, Failure> {
        let target = &self.targets[i];
        loop {
            let (conn, reused) = match target.pool.checkout(sent) {
                Some(conn) => (conn, true),
                // Boxed: a connect is rare, and its TLS handshake state
                // (2.4 KiB) would otherwise be in every request's future.
                None => (Box::pin(self.connect(target)).await?, false),
            };
            match pool::exchange(conn, &target.pool, req, self.deadline(sent, upload)).await {
                Ok(resp) => {
                    self.mark_reachable(target);
                    return Ok(resp);
                }
                Err(ExchangeError::Failed { unsent: Some(unsent), .. }) if reused => req = *unsent,
                Err(ExchangeError::Failed { error, .. }) => {
                    return Err(Failure::Exchange(self.exchange_failed(target, error)));
                }
                Err(ExchangeError::TimedOut) => return Err(Failure::TimedOut),
            }
        }
    }

    /// The connection was made, the exchange failed: the target is up, the
    /// request lost. The client's answer: 400 if its own body failed
    /// (malformed chunks, cut short), 408 if it stopped for `idle_timeout`:
    /// no upstream's fault and no cause for a warning an operator would be
    /// paged for; else 502.
    fn exchange_failed(&self, target: &Target, err: hyper::Error) -> GatewayError {
        self.mark_reachable(target);
        match std::error::Error::source(&err).and_then(|cause| cause.downcast_ref::<ClientBody>()) {
            Some(ClientBody::Failed(_)) => {
                tracing::debug!(upstream = %self.name, error = %err, "the client's request body failed");
                GatewayError::BadRequest("the request body was malformed or cut short")
            }
            Some(ClientBody::Stalled) => {
                tracing::debug!(upstream = %self.name, "the client's request body stalled");
                GatewayError::RequestTimeout
            }
            None => {
                tracing::warn!(upstream = %self.name, addr = %target.authority, error = %err, "upstream request failed");
                GatewayError::UpstreamUnavailable
            }
        }
    }

    /// A new connection to `target` (TCP, then TLS for https), its task started.
    async fn connect(&self, target: &Target) -> Result<Conn, Failure> {
        let uri = Uri::builder()
            .scheme(target.scheme.clone())
            .authority(target.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|_| Failure::Connect)?;
        let io = match self.connector.clone().call(uri).await {
            Ok(io) => io,
            Err(err) => {
                self.mark_unreachable(target, &*err);
                return Err(Failure::Connect);
            }
        };
        // Flattened writes, as on the server side (`server::h1_builder`).
        match hyper::client::conn::http1::Builder::new().writev(false).handshake(io).await {
            Ok((sender, conn)) => Ok(Conn::spawn(sender, conn)),
            Err(err) => {
                self.mark_unreachable(target, &err);
                Err(Failure::Connect)
            }
        }
    }

    /// The next target in turn that is not paused (and not `avoid`). When all are
    /// paused, the next one anyway: a slow answer beats refusing outright.
    fn pick(&self, avoid: Option<usize>) -> Option<usize> {
        let n = self.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let candidates = (0..n).map(|k| (start + k) % n).filter(|&i| Some(i) != avoid);
        // Read only once a target has failed: a healthy pick needs no clock.
        let mut now = None;
        for i in candidates.clone() {
            let t = &self.targets[i];
            if t.failures.load(Ordering::Relaxed) == 0 {
                return Some(i);
            }
            let now = *now.get_or_insert_with(|| self.now_ms());
            let until = t.paused_until.load(Ordering::Relaxed);
            let hold = now + self.probe_hold.as_millis() as u64;
            // The pause is over: this request probes, the others keep off it.
            if until <= now
                && t.paused_until.compare_exchange(until, hold, Ordering::AcqRel, Ordering::Relaxed).is_ok()
            {
                return Some(i);
            }
        }
        candidates.into_iter().next()
    }

    /// The target answered (or at least accepted a connection).
    fn mark_reachable(&self, target: &Target) {
        if target.failures.swap(0, Ordering::AcqRel) != 0 {
            target.paused_until.store(0, Ordering::Release);
            tracing::info!(upstream = %self.name, addr = %target.authority, "upstream target reachable again");
        }
    }

    /// Pauses the target after a connect failure.
    fn mark_unreachable(&self, target: &Target, err: &(dyn std::error::Error + 'static)) {
        let pause = self.pause(target);
        let cause = err.to_string();
        tracing::warn!(upstream = %self.name, addr = %target.authority, ?pause, %cause, "upstream target unreachable; skipping it");
    }

    /// 1 s, doubling per consecutive failure, at most 30 s.
    fn pause(&self, target: &Target) -> Duration {
        let failures = target.failures.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        let pause = BACKOFF_BASE.saturating_mul(1 << (failures - 1).min(16)).min(BACKOFF_CAP);
        target.paused_until.store(self.now_ms() + pause.as_millis() as u64, Ordering::Release);
        pause
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The targets skipped right now after connect failures: `host:port` and
    /// how many connects to it failed in a row (each one tried doubles its
    /// pause, so a count that stays put shows it was really skipped).
    pub fn paused_targets(&self) -> Vec<(String, u32)> {
        let now = self.now_ms();
        self.targets
            .iter()
            .filter_map(|t| {
                let failures = t.failures.load(Ordering::Relaxed);
                (failures > 0 && t.paused_until.load(Ordering::Relaxed) > now)
                    .then(|| (t.authority.to_string(), failures))
            })
            .collect()
    }
}

/// rustls for https targets; http-only upstreams skip reading the system
/// roots. An unreadable `tls_ca` is logged and left out, so that upstream fails
/// verification (502) instead of being trusted by some other root.
fn client_tls(settings: &UpstreamSettings) -> rustls::ClientConfig {
    let wants_tls = settings.urls.iter().any(|u| u.scheme() == Some(&Scheme::HTTPS));
    let roots = if wants_tls {
        crate::tls::trust_roots(settings.tls_ca.as_deref()).unwrap_or_else(|e| {
            tracing::error!(upstream = %settings.name, error = %e, "tls_ca unusable; trusting the system roots only");
            crate::tls::trust_roots(None).unwrap_or_else(|_| rustls::RootCertStore::empty())
        })
    } else {
        rustls::RootCertStore::empty()
    };
    crate::tls::client_config(roots)
}

/// What [`pool::exchange`] returns: the response head to come, or the request back unsent.
trait ExchangeFuture: Future<Output = Result<Response<UpstreamBody>, ExchangeError>> + Send {}

impl<F> ExchangeFuture for F where F: Future<Output = Result<Response<UpstreamBody>, ExchangeError>> + Send {}

type Boxed = Pin<Box<dyn Future<Output = Result<Response<UpstreamBody>, GatewayError>> + Send>>;

pin_project_lite::pin_project! {
    /// One request's exchange with its upstream ([`Upstream::send`]).
    #[project = SendingProj]
    enum Sending<F> {
        /// Sent on an idle pooled connection. If that connection turns out to
        /// have closed before taking it, the request comes back and goes the
        /// other way.
        Pooled { upstream: Arc<Upstream>, target: usize, sent: Instant, #[pin] response: F },
        /// A connect, a re-send, or an answer already known.
        Other { fut: Boxed },
    }
}

impl<F: ExchangeFuture> Future for Sending<F> {
    type Output = Result<Response<UpstreamBody>, GatewayError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (upstream, i, sent, unsent) = match self.as_mut().project() {
            SendingProj::Other { fut } => return fut.as_mut().poll(cx),
            SendingProj::Pooled { upstream, target, sent, response } => {
                let target_state = &upstream.targets[*target];
                match std::task::ready!(response.poll(cx)) {
                    Ok(resp) => {
                        upstream.mark_reachable(target_state);
                        return Poll::Ready(Ok(resp));
                    }
                    Err(ExchangeError::Failed { unsent: Some(unsent), .. }) => {
                        (upstream.clone(), *target, *sent, unsent)
                    }
                    Err(ExchangeError::Failed { error, unsent: None }) => {
                        return Poll::Ready(Err(upstream.exchange_failed(target_state, error)));
                    }
                    Err(ExchangeError::TimedOut) => return Poll::Ready(Err(GatewayError::UpstreamTimeout)),
                }
            }
        };
        // The pooled connection closed before the request left: nothing was
        // sent, the body is unread. Another connection (or target) takes it,
        // by the same deadline.
        let (parts, body) = unsent.into_parts();
        let upload = body.upload.as_ref().map(|watch| watch.progress.clone());
        let Some(body) = body.into_unread() else {
            return Poll::Ready(Err(GatewayError::UpstreamUnavailable));
        };
        let mut fut = upstream.send_from_timed(i, parts, body, sent, upload);
        let poll = fut.as_mut().poll(cx);
        self.set(Sending::Other { fut });
        poll
    }
}

/// Why the client's request body failed as it was being sent on.
#[derive(Debug, thiserror::Error)]
enum ClientBody {
    /// Malformed chunks, a body cut short, a reset.
    #[error("the client's request body failed: {0}")]
    Failed(hyper::Error),
    /// Nothing more of it for `idle_timeout` (nginx's `client_body_timeout`).
    #[error("the client sent nothing more of its request body for idle_timeout")]
    Stalled,
}

impl ClientBody {
    fn boxed(self) -> BoxError {
        Box::new(self)
    }
}

/// A request body being sent: its stall timer, and the mark of its progress
/// that the wait for the response head runs from.
#[derive(Debug)]
struct UploadWatch {
    progress: BodyProgress,
    stall: Stall,
    limit: Duration,
}

/// The client's request body, handed to the upstream client so that a request
/// whose connect failed can be re-sent: the body stays in a shared slot until
/// the client first reads it, so "still in the slot" means "no byte was sent".
#[derive(Debug)]
pub struct ReplayBody {
    state: ReplayState,
    /// Only for a request that has a body (boxed: every request's body
    /// carries the field).
    upload: Option<Box<UploadWatch>>,
}

#[derive(Debug)]
enum ReplayState {
    Unread(Arc<Mutex<Option<Incoming>>>),
    Reading(Incoming),
}

impl ReplayBody {
    fn new(slot: Arc<Mutex<Option<Incoming>>>, upload: Option<Box<UploadWatch>>) -> ReplayBody {
        ReplayBody { state: ReplayState::Unread(slot), upload }
    }

    /// A body sent to one place only: nowhere to re-send it once it is read.
    fn once(body: Incoming, upload: Option<Box<UploadWatch>>) -> ReplayBody {
        ReplayBody { state: ReplayState::Reading(body), upload }
    }

    /// The body, if no byte of it was read.
    fn into_unread(self) -> Option<Incoming> {
        match self.state {
            ReplayState::Reading(body) => Some(body),
            ReplayState::Unread(slot) => slot.lock().unwrap_or_else(PoisonError::into_inner).take(),
        }
    }

    fn peek<T>(&self, f: impl FnOnce(Option<&Incoming>) -> T) -> T {
        match &self.state {
            ReplayState::Unread(slot) => f(slot.lock().unwrap_or_else(PoisonError::into_inner).as_ref()),
            ReplayState::Reading(body) => f(Some(body)),
        }
    }
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let ReplayState::Unread(slot) = &this.state {
            let taken = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            // Empty: an earlier attempt read it. Sending a truncated body is never right.
            let Some(body) = taken else {
                return Poll::Ready(Some(Err("the request body was already sent to another target".into())));
            };
            this.state = ReplayState::Reading(body);
        }
        match &mut this.state {
            ReplayState::Reading(body) => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                let Some(watch) = this.upload.as_mut() else {
                    return polled.map_err(|err| ClientBody::Failed(err).boxed());
                };
                let frame = match watch.stall.watch(polled, watch.limit, cx) {
                    Poll::Pending => {
                        watch.progress.waiting_on_client();
                        return Poll::Pending;
                    }
                    Poll::Ready(None) => return Poll::Ready(Some(Err(ClientBody::Stalled.boxed()))),
                    Poll::Ready(Some(frame)) => frame,
                };
                watch.progress.moved();
                Poll::Ready(frame.map(|f| f.map_err(|err| ClientBody::Failed(err).boxed())))
            }
            ReplayState::Unread(_) => Poll::Ready(None),
        }
    }

    // An emptied slot reports "more to come", so the client polls and meets the error.
    fn is_end_stream(&self) -> bool {
        self.peek(|b| b.is_some_and(Body::is_end_stream))
    }

    fn size_hint(&self) -> SizeHint {
        self.peek(|b| b.map(Body::size_hint).unwrap_or_default())
    }
}

/// Every upstream of one config snapshot, by name.
#[derive(Debug, Default)]
pub struct Upstreams(HashMap<String, Arc<Upstream>>);

impl Upstreams {
    pub fn new(settings: &[UpstreamSettings], idle_timeout: Duration) -> Upstreams {
        Upstreams::rebuild(settings, idle_timeout, None)
    }

    /// For a reload: an upstream whose settings did not change keeps its pool
    /// from `previous`. One with `tls_ca` is always rebuilt, so a renewed CA
    /// file at the same path is read again.
    pub fn rebuild(
        settings: &[UpstreamSettings],
        idle_timeout: Duration,
        previous: Option<&Upstreams>,
    ) -> Upstreams {
        let reuse = |s: &UpstreamSettings| {
            let old = previous?.0.get(&s.name)?;
            (s.tls_ca.is_none() && old.built_from.0 == *s && old.built_from.1 == idle_timeout)
                .then(|| old.clone())
        };
        Upstreams(
            settings
                .iter()
                .map(|s| {
                    (s.name.clone(), reuse(s).unwrap_or_else(|| Arc::new(Upstream::new(s, idle_timeout))))
                })
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.0.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(urls: &[&str]) -> Upstream {
        let settings = UpstreamSettings {
            name: "app".into(),
            urls: urls.iter().map(|u| u.parse().unwrap()).collect(),
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(30),
            tls_ca: None,
        };
        Upstream::new(&settings, Duration::from_secs(75))
    }

    /// A target that answers every request with the body it was sent.
    async fn echo_target() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        use http_body_util::{BodyExt, Full};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let count = count.clone();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    count.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let body = req.into_body().collect().await?.to_bytes();
                        Ok::<_, hyper::Error>(Response::new(Full::new(body)))
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(io, service));
            }
        });
        (addr, served)
    }

    #[tokio::test]
    async fn a_pooled_connection_closing_before_it_takes_the_request_hands_it_on_whole() {
        use http_body_util::{BodyExt, Full};
        let (addr, served) = echo_target().await;
        let up = Arc::new(upstream(&[&format!("http://{addr}")]));
        // An idle pooled connection whose peer is about to go away.
        let (ours, theirs) = tokio::io::duplex(1024);
        pool::park_idle(&up.targets[0].pool, hyper_util::rt::TokioIo::new(ours)).await;
        assert_eq!(up.targets[0].pool.idle_count(), 1);
        let doomed_peer = Mutex::new(Some(theirs));

        // `send` needs a server-side request (its body is hyper's `Incoming`):
        // one from an in-memory client, through an in-memory hyper server.
        let (client_io, server_io) = tokio::io::duplex(4096);
        let gateway = up.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            // The peer closes now: the pool still sees the connection ready
            // (its task has not run since), so the request is handed to it.
            drop(doomed_peer.lock().unwrap().take());
            gateway.clone().send(req, Instant::now())
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(server_io), service),
        );
        let (mut client, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(client_io)).await.unwrap();
        tokio::spawn(conn);
        let req = Request::post("/echo")
            .header(HOST, "app")
            .body(Full::new(Bytes::from_static(b"the whole body")))
            .unwrap();
        let resp = client.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"the whole body", "re-sent with its body unread");
        assert_eq!(served.load(Ordering::SeqCst), 1, "sent once, on a new connection");
        // The doomed connection was the one taken: only the new one is idle now.
        assert_eq!(up.targets[0].pool.idle_count(), 1);
        assert_eq!(up.targets[0].failures.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_target_with_no_failures_is_picked_whatever_its_stale_pause() {
        // mark_reachable clears the failures, then the pause: between the two
        // stores (or after a late probe hold) the target is healthy.
        let up = upstream(&["http://a:1", "http://b:2"]);
        up.targets[0].paused_until.store(up.now_ms() + 60_000, Ordering::Release);
        let picks: Vec<usize> = (0..4).map(|_| up.pick(None).unwrap()).collect();
        assert_eq!(picks, [0, 1, 0, 1]);
        assert!(up.paused_targets().is_empty());
    }

    #[test]
    fn round_robin_skips_a_paused_target() {
        let up = upstream(&["http://a:1", "http://b:2", "http://c:3"]);
        let picks: Vec<usize> = (0..6).map(|_| up.pick(None).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        up.pause(&up.targets[1]);
        assert_eq!(up.paused_targets(), [("b:2".to_owned(), 1)]);
        let picks: Vec<usize> = (0..6).map(|_| up.pick(None).unwrap()).collect();
        assert!(!picks.contains(&1), "{picks:?}");
        assert_eq!(up.pick(Some(0)), Some(2), "a re-send avoids the target that failed");
    }

    #[test]
    fn pauses_double_up_to_the_cap_and_reset_on_success() {
        let up = upstream(&["http://a:1", "http://b:2"]);
        let t = &up.targets[0];
        let pauses: Vec<u64> = (0..7).map(|_| up.pause(t).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30]);
        up.mark_reachable(t);
        assert!(up.paused_targets().is_empty());
        assert_eq!(up.pause(t), BACKOFF_BASE);
    }

    #[test]
    fn one_request_probes_a_target_whose_pause_is_over() {
        let up = upstream(&["http://a:1", "http://b:2"]);
        up.pause(&up.targets[0]);
        up.targets[0].paused_until.store(0, Ordering::Release); // the pause ran out
        let picks: Vec<usize> = (0..4).map(|_| up.pick(None).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 1, "one probe, the rest elsewhere: {picks:?}");
    }

    #[test]
    fn all_paused_still_picks_one() {
        let up = upstream(&["http://a:1", "http://b:2"]);
        up.pause(&up.targets[0]);
        up.pause(&up.targets[1]);
        assert!(up.pick(None).is_some());
        assert_eq!(up.pick(Some(0)), Some(1));
        let single = upstream(&["http://a:1"]);
        single.pause(&single.targets[0]);
        assert_eq!(single.pick(None), Some(0));
        assert_eq!(single.pick(Some(0)), None);
    }
}
