//! `pace`: a fixed-rate HTTP/1.1 client for the half-peak p99 of
//! `benches/compare/run.sh` (DESIGN.md §12, BENCHMARKS.md).
//!
//! wrk has no fixed rate, and hey's workers tick together, so hey's requests
//! arrive in bursts of one per connection and its p99 is mostly the time a
//! one-core proxy takes to work through a burst. Here request *i* is due at
//! `start + i / rate` on whichever connection is free, so arrivals are evenly
//! spread. Each request is timed from when it was due, as wrk2 does, so a
//! server that falls behind is charged for the queue it caused.
//!
//! One thread, epoll and a timerfd: the client wakes at each due time to the
//! microsecond without spinning, which matters on the core it shares with the
//! upstream (oha's runtime fell behind its own schedule there). A timer
//! wake-up per request costs that core about as much again as the upstream, so
//! `--tick` keeps the timer's expiries at least that far apart: a request that
//! falls due in between goes out at the next wake-up of any kind, a response
//! or the timer, so at most one tick late.
//!
//! ```text
//! cargo run --release --example pace -- --rate 20000 --conns 32 --duration 10s \
//!     [--warmup 1s] [--tick 100us] [-H 'Authorization: Bearer …'] http://127.0.0.1:PORT/path
//! ```
//!
//! Prints one line over the requests due after the warm-up:
//! - `requests=… rate=…`, and `p50_ms=… p99_ms=… p999_ms=… max_ms=…` timed from
//!   each request's due time;
//! - `sent_p99_ms=…`, timed from when it went out (what hey and wrk report);
//! - `lag_p99_ms=…`, how long a request went out after both its due time and a
//!   free connection: the client's own delay (the tick, its wake-up), which a
//!   run must keep small to measure the server rather than itself;
//! - `queued_pct=…`, the share that found every connection busy when due.
//!
//! Anything but an HTTP/1.1 `200` with a `Content-Length` and no
//! `Connection: close`, a closed connection, bytes nobody asked for, or 10 s
//! in which nothing happens stops it with exit code 1. Errors are strings: this
//! is a bench tool that prints them and exits.
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use nix::time::{clock_gettime, ClockId as Clock};

#[derive(Parser)]
#[command(about = "A fixed-rate HTTP/1.1 client: spread arrivals, latency from each request's due time")]
struct Args {
    /// Requests per second, spread evenly.
    #[arg(long)]
    rate: f64,
    /// Keep-alive connections; a request goes out on any free one.
    #[arg(long, default_value_t = 32)]
    conns: usize,
    /// How long the measured requests are due over.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    duration: Duration,
    /// Requests due before this are sent but not measured.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    warmup: Duration,
    /// The shortest time between two expiries of the timer.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    tick: Duration,
    /// An extra request header, `Name: value`.
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// `http://host:port/path`
    url: http::Uri,
}

/// The event data of the timer; connections use their index.
const TIMER: u64 = u64::MAX;
/// This long without an event stops the run (u16: epoll's timeout in ms).
const STALL_MS: u16 = 10_000;

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pace: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One request's times, in nanoseconds of the monotonic clock.
#[derive(Clone, Copy)]
struct InFlight {
    due: u64,
    /// When its connection became free (or the run started).
    free: u64,
    sent: u64,
    measured: bool,
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    in_flight: Option<InFlight>,
    free_since: u64,
}

/// The measured requests' times (see the module's doc).
struct Samples {
    from_due: Vec<u64>,
    from_sent: Vec<u64>,
    lag: Vec<u64>,
    queued: usize,
    first_due: u64,
    last_done: u64,
}

/// The run's state: the connections, which are free, the schedule and the timer.
struct Pacer {
    epoll: Epoll,
    timer: TimerFd,
    conns: Vec<Conn>,
    idle: VecDeque<usize>,
    schedule: Schedule,
    request: Vec<u8>,
    /// The next request to send.
    next: u64,
    /// When the timer is set for and last went off, and which request it is set for.
    armed_at: u64,
    fired_at: u64,
    armed_for: u64,
}

fn run(args: &Args) -> Result<String, String> {
    if !(args.rate.is_finite() && args.rate > 0.0) || args.conns == 0 {
        return Err("--rate and --conns must be above 0".into());
    }
    let mut pacer = Pacer::connect(args)?;
    let schedule = &pacer.schedule;
    let mut samples = Samples::new(schedule.due(schedule.warm), schedule.total - schedule.warm);
    let mut events = vec![EpollEvent::empty(); args.conns + 1];
    let mut done = 0u64;
    while done < pacer.schedule.total {
        pacer.send_due()?;
        pacer.arm_timer()?;
        let n = match pacer.epoll.wait(&mut events, STALL_MS) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("epoll: {e}")),
        };
        if n == 0 {
            let waiting = pacer.conns.len() - pacer.idle.len();
            return Err(format!("nothing happened for {STALL_MS} ms ({waiting} requests unanswered)"));
        }
        let now = now_ns()?;
        for c in events[..n].iter().map(EpollEvent::data) {
            if c == TIMER {
                pacer.fired_at = pacer.armed_at;
            } else if let Some(req) = pacer.conns[c as usize].on_readable(now)? {
                samples.record(req, now);
                done += 1;
                pacer.idle.push_back(c as usize);
            }
        }
    }
    if pacer.conns.iter().any(|c| !c.buf.is_empty()) {
        return Err("bytes nobody asked for at the end of the run".into());
    }
    Ok(samples.report())
}

impl Pacer {
    fn connect(args: &Args) -> Result<Pacer, String> {
        let (addr, request) = target(args)?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| format!("epoll: {e}"))?;
        let timer =
            TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC)
                .map_err(|e| format!("timerfd: {e}"))?;
        // Edge-triggered and never read: every expiry wakes epoll once, and
        // re-arming resets the count, so an expiry of an earlier setting is not
        // reported again.
        epoll
            .add(&timer, EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, TIMER))
            .map_err(|e| format!("epoll: {e}"))?;
        let mut conns = Vec::with_capacity(args.conns);
        for i in 0..args.conns {
            let stream = TcpStream::connect(addr).map_err(|e| format!("connect to {addr}: {e}"))?;
            stream
                .set_nodelay(true)
                .and_then(|()| stream.set_nonblocking(true))
                .map_err(|e| e.to_string())?;
            epoll
                .add(&stream, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
                .map_err(|e| format!("epoll: {e}"))?;
            conns.push(Conn { stream, buf: Vec::with_capacity(4096), in_flight: None, free_since: 0 });
        }
        Ok(Pacer {
            epoll,
            timer,
            conns,
            idle: (0..args.conns).collect(),
            schedule: Schedule::new(args, now_ns()? + 1_000_000),
            request,
            next: 0,
            armed_at: 0,
            fired_at: 0,
            armed_for: u64::MAX,
        })
    }

    /// Sends every request now due that a free connection can take.
    fn send_due(&mut self) -> Result<(), String> {
        while self.next < self.schedule.total {
            let due = self.schedule.due(self.next);
            let now = now_ns()?;
            if due > now {
                return Ok(());
            }
            let Some(c) = self.idle.pop_front() else { return Ok(()) };
            let conn = &mut self.conns[c];
            let req =
                InFlight { due, free: conn.free_since, sent: now, measured: self.next >= self.schedule.warm };
            conn.send(&self.request, req)?;
            self.next += 1;
        }
        Ok(())
    }

    /// Sets the timer for the next request, unless it is set for it already or
    /// no connection is free (the next answer frees one and wakes the loop).
    fn arm_timer(&mut self) -> Result<(), String> {
        if self.next >= self.schedule.total || self.idle.is_empty() || self.next == self.armed_for {
            return Ok(());
        }
        self.armed_at = self.schedule.due(self.next).max(self.fired_at + self.schedule.tick);
        self.armed_for = self.next;
        let at = TimeSpec::new((self.armed_at / 1_000_000_000) as _, (self.armed_at % 1_000_000_000) as _);
        self.timer
            .set(Expiration::OneShot(at), TimerSetTimeFlags::TFD_TIMER_ABSTIME)
            .map_err(|e| format!("timerfd: {e}"))
    }
}

/// When each request falls due, in nanoseconds of the monotonic clock.
struct Schedule {
    start: u64,
    interval: f64,
    tick: u64,
    /// Requests due during the warm-up: sent, not measured.
    warm: u64,
    total: u64,
}

impl Schedule {
    fn new(args: &Args, start: u64) -> Schedule {
        let warm = (args.warmup.as_secs_f64() * args.rate) as u64;
        Schedule {
            start,
            interval: 1e9 / args.rate,
            tick: args.tick.as_nanos() as u64,
            warm,
            total: warm + (args.duration.as_secs_f64() * args.rate) as u64,
        }
    }

    fn due(&self, i: u64) -> u64 {
        self.start + (i as f64 * self.interval) as u64
    }
}

impl Conn {
    fn send(&mut self, request: &[u8], req: InFlight) -> Result<(), String> {
        match self.stream.write(request) {
            Ok(n) if n == request.len() => {}
            Ok(n) => return Err(format!("short write ({n} of {} bytes)", request.len())),
            Err(e) => return Err(format!("write: {e}")),
        }
        self.in_flight = Some(req);
        Ok(())
    }

    /// Reads what arrived; the finished request once its whole response is in.
    fn on_readable(&mut self, now: u64) -> Result<Option<InFlight>, String> {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => return Err("the server closed a connection".into()),
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                return Ok(None)
            }
            Err(e) => return Err(format!("read: {e}")),
        }
        let Some(end) = response_end(&self.buf)? else { return Ok(None) };
        if end != self.buf.len() {
            return Err("bytes after a response".into());
        }
        self.buf.clear();
        self.free_since = now;
        self.in_flight.take().map(Some).ok_or_else(|| "a response nobody asked for".into())
    }
}

/// Where the complete response at the front of `buf` ends, once it is all there.
fn response_end(buf: &[u8]) -> Result<Option<usize>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(buf) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("unparsable response: {e}")),
    };
    if response.version != Some(1) || response.code != Some(200) {
        let (version, code) = (response.version.unwrap_or(0), response.code.unwrap_or(0));
        return Err(format!("answered HTTP/1.{version} {code}, not HTTP/1.1 200"));
    }
    let header = |name: &str| response.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name));
    if header("connection").is_some_and(|h| h.value.eq_ignore_ascii_case(b"close")) {
        return Err("the server closes the connection (Connection: close)".into());
    }
    let length = header("content-length")
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok())
        .ok_or("a response without a Content-Length")?;
    Ok((buf.len() >= head + length).then_some(head + length))
}

/// The address to connect to, and the request every connection sends.
fn target(args: &Args) -> Result<(SocketAddr, Vec<u8>), String> {
    let url = &args.url;
    if url.scheme_str() != Some("http") {
        return Err(format!("only http:// URLs, not {url}"));
    }
    let authority = url.authority().ok_or("the URL has no host")?;
    let addr = (authority.host(), authority.port_u16().unwrap_or(80))
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\n");
    for header in &args.headers {
        if !header.contains(':') || header.contains(['\r', '\n']) {
            return Err(format!("-H takes `Name: value`, not {header:?}"));
        }
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    Ok((addr, request.into_bytes()))
}

fn now_ns() -> Result<u64, String> {
    let t = clock_gettime(Clock::CLOCK_MONOTONIC).map_err(|e| format!("clock: {e}"))?;
    Ok(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

impl Samples {
    fn new(first_due: u64, expected: u64) -> Samples {
        let n = expected as usize;
        Samples {
            from_due: Vec::with_capacity(n),
            from_sent: Vec::with_capacity(n),
            lag: Vec::with_capacity(n),
            queued: 0,
            first_due,
            last_done: 0,
        }
    }

    fn record(&mut self, req: InFlight, done: u64) {
        if req.measured {
            self.from_due.push(done - req.due);
            self.from_sent.push(done - req.sent);
            self.lag.push(req.sent - req.due.max(req.free));
            self.queued += usize::from(req.free > req.due);
            self.last_done = done;
        }
    }

    fn report(mut self) -> String {
        self.from_due.sort_unstable();
        self.from_sent.sort_unstable();
        self.lag.sort_unstable();
        let n = self.from_due.len();
        let seconds = self.last_done.saturating_sub(self.first_due) as f64 / 1e9;
        let ms =
            |v: &[u64], q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1] as f64 / 1e6;
        if n == 0 {
            return "requests=0".into();
        }
        format!(
            "requests={n} rate={:.0} p50_ms={:.3} p99_ms={:.3} p999_ms={:.3} max_ms={:.3} \
             sent_p99_ms={:.3} lag_p99_ms={:.3} queued_pct={:.2}",
            n as f64 / seconds,
            ms(&self.from_due, 0.50),
            ms(&self.from_due, 0.99),
            ms(&self.from_due, 0.999),
            ms(&self.from_due, 1.0),
            ms(&self.from_sent, 0.99),
            ms(&self.lag, 0.99),
            100.0 * self.queued as f64 / n as f64,
        )
    }
}
