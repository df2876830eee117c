//! # jwtgate
//!
//! A reverse-proxy authentication gateway. Every request is matched against the
//! route policy, its JWT verified, and the verified claims forwarded upstream.
//!
//! ```text
//! accept → (tls) → http/1.1 or h2 parse
//!  → snapshot   take the current Arc<Runtime>        (server.rs)
//!  → canonical  canonicalize the request target      (route::canonical)
//!  → route      most specific matching route         (route::table)
//!  → extract    credentials from header/cookie/query (pipeline::extract)
//!  → verify     signature, claims, revocation        (token::verify, store)
//!  → csrf       double submit + Origin               (sessions, next issue)
//!  → refresh    implicit refresh                     (sessions, next issue)
//!  → decide     policy × credential state            (pipeline)
//!  → rewrite    strip spoofable headers, add claims  (forward::headers)
//!  → forward    pooled upstream client, streaming    (forward::client, forward::pool)
//!  → respond    hop-by-hop cleanup, Set-Cookie       (pipeline)
//!  → log        one access-log event per request     (pipeline)
//! ```
//!
//! Modules: [`config`] (raw + validated config), [`route`] (paths and routes),
//! [`token`] (claims, keys, verify, mint), [`store`] (revocation state),
//! [`error`] (every refusal → problem+json), [`clock`] (injectable time).

pub mod admin;
pub mod clock;
pub mod config;
pub mod demo;
pub mod error;
pub mod forward;
pub mod gateway;
pub mod metrics;
pub mod pipeline;
pub mod route;
pub mod server;
pub mod session;
mod stall;
pub mod store;
pub mod tls;
pub mod token;

pub use gateway::Gateway;

/// Serves `listener` with `gateway` until `shutdown` resolves (DESIGN.md §11:
/// stop accepting, drain in-flight requests up to `shutdown_grace`).
pub async fn run(
    listener: tokio::net::TcpListener,
    gateway: std::sync::Arc<Gateway>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    server::serve(listener, gateway, shutdown).await
}
pub mod commands;
