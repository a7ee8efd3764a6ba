//! What an operator on call needs to see, in the Prometheus text format (0.0.4, written by the
//! `prometheus-client` crate): counters fed by the enclave's log records (API requests, KMS
//! calls, attestation documents, dropped records), by the credentials service and by the proxy;
//! ages and expiries computed at each scrape; and the readiness rule behind `/healthz`.
//! [`serve`] answers `GET /metrics`, `/healthz` and `/livez` on a loopback address.
//!
//! # Metrics
//! | name | type | labels | from |
//! |---|---|---|---|
//! | `ccc_enclave_api_requests_total` | counter | `operation`, `outcome` | `api.request` records |
//! | `ccc_enclave_api_request_duration_seconds` | histogram | `operation`, `outcome` | `api.request` |
//! | `ccc_enclave_kms_calls_total` | counter | `operation`, `outcome` | `kms.call` records |
//! | `ccc_enclave_kms_call_duration_seconds` | histogram | `operation`, `outcome` | `kms.call` |
//! | `ccc_enclave_attestation_documents_total` | counter | `purpose` | `attestation.document` |
//! | `ccc_enclave_log_records_total` | counter | `level` | every record received |
//! | `ccc_enclave_log_records_dropped_total` | counter | | the records' `dropped` counts |
//! | `ccc_enclave_heartbeat_age_seconds` | gauge | | since the last record (or boot heartbeat); since the parent started while none came |
//! | `ccc_parent_log_lines_malformed_total` | counter | | lines refused by the log reader |
//! | `ccc_parent_credentials_refreshes_total` | counter | | credentials fetched from the source |
//! | `ccc_parent_credentials_refresh_failures_total` | counter | | fetches that failed |
//! | `ccc_parent_credentials_expiry_seconds` | gauge | | until the credentials served expire (absent while unknown) |
//! | `ccc_parent_proxy_connections_active` | gauge | | proxied connections open |
//! | `ccc_parent_proxy_connections_total` | counter | | connections accepted by the proxy |
//! | `ccc_parent_proxy_connections_refused_total` | counter | `reason` (`allowlist`, `limit`) | refusals |
//! | `ccc_parent_proxy_upstream_failures_total` | counter | | destinations that did not answer |
//! | `ccc_parent_proxy_bytes_total` | counter | `direction` (`to_destination`, `to_enclave`) | bytes relayed, counted when a connection ends |
//!
//! Label values come from the enclave's records, which the parent does not trust: a value that
//! is not a short name becomes `other`, and each family keeps at most [`MAX_SERIES`] label
//! sets (later ones are counted under `other`), so no enclave can grow the parent's memory.
//!
//! # Readiness (`/healthz`)
//! Ready when both hold:
//! - the enclave's last record (any record: a `heartbeat` comes every 10 s) is at most
//!   [`Health::heartbeat_max`] old;
//! - the last KMS call within [`Health::kms_window`], if there was one, succeeded — or failed
//!   for a reason that is the caller's (`invalid_ciphertext`, `incorrect_key`,
//!   `invalid_request`: a bad request says nothing about the enclave). No KMS call in the window
//!   is no evidence of a problem.
//!
//! `/livez` answers 200 whenever the parent's services answer at all.

use crate::ArgumentError;
use crate::proxy::Stats;
use crate::service::Services;
use ccc_sdk::kms::client::Outcome;
use ccc_sdk::log::Received;
use ccc_sdk::net::Stream;
use ccc_sdk::time::UnixMillis;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Label sets one family keeps before folding new ones into `other`.
pub const MAX_SERIES: usize = 64;

/// Longest label value taken from a record (longer ones are `other`).
const MAX_LABEL_LEN: usize = 64;

/// Latency buckets in seconds: an attested KMS call takes tens of milliseconds on Nitro,
/// hundreds under emulation; retries take seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Largest HTTP request head read by [`serve`].
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// How long a scraper may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Scrapes answered at once (more wait in the listen queue).
const MAX_SCRAPES: usize = 4;

/// The Prometheus text format's content type.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

type Labels = Vec<(&'static str, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The readiness rule's two bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// The longest time without a record from the enclave (default 30 s: three heartbeats).
    pub heartbeat_max: Duration,
    /// How far back the last KMS call counts (default 5 minutes).
    pub kms_window: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            heartbeat_max: Duration::from_secs(30),
            kms_window: Duration::from_secs(300),
        }
    }
}

/// What changes between scrapes without being a counter.
#[derive(Debug)]
struct Live {
    started: Instant,
    heartbeat: Mutex<Option<Instant>>,
    /// When the last KMS call ended, its operation and its outcome label.
    kms: Mutex<Option<(Instant, String, String)>>,
    credentials_expiry: Mutex<Option<UnixMillis>>,
    proxy: Mutex<Vec<Arc<Stats>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The parent's metrics. One per process ([`Services::metrics`]); cheap to share.
pub struct Metrics {
    registry: Registry,
    api_requests: Family<Labels, Counter>,
    api_duration: Histograms,
    kms_calls: Family<Labels, Counter>,
    kms_duration: Histograms,
    attestation_documents: Family<Labels, Counter>,
    log_records: Family<Labels, Counter>,
    log_dropped: Counter,
    log_malformed: Counter,
    credentials_refreshes: Counter,
    credentials_failures: Counter,
    live: Arc<Live>,
    /// Label sets seen, per family (the cardinality bound).
    series: Mutex<BTreeMap<&'static str, BTreeSet<Labels>>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero; the heartbeat age counts from now.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let api_requests = Family::<Labels, Counter>::default();
        let api_duration = Histograms::new_with_constructor(histogram);
        let kms_calls = Family::<Labels, Counter>::default();
        let kms_duration = Histograms::new_with_constructor(histogram);
        let attestation_documents = Family::<Labels, Counter>::default();
        let log_records = Family::<Labels, Counter>::default();
        let log_dropped = Counter::default();
        let log_malformed = Counter::default();
        let credentials_refreshes = Counter::default();
        let credentials_failures = Counter::default();
        registry.register(
            "ccc_enclave_api_requests",
            "Enclave API requests answered, by operation and outcome (ok or the error code)",
            api_requests.clone(),
        );
        registry.register(
            "ccc_enclave_api_request_duration_seconds",
            "Time the enclave took to answer an API request",
            api_duration.clone(),
        );
        registry.register(
            "ccc_enclave_kms_calls",
            "KMS calls the enclave made, by operation and outcome (ok, access_denied, throttled, \
             clock_skew, ...)",
            kms_calls.clone(),
        );
        registry.register(
            "ccc_enclave_kms_call_duration_seconds",
            "Time a KMS call took, retries included",
            kms_duration.clone(),
        );
        registry.register(
            "ccc_enclave_attestation_documents",
            "NSM attestation documents the enclave made, by purpose",
            attestation_documents.clone(),
        );
        registry.register(
            "ccc_enclave_log_records",
            "Log records received from the enclave, by level",
            log_records.clone(),
        );
        registry.register(
            "ccc_enclave_log_records_dropped",
            "Log records the enclave dropped because its queue was full (reported in later records)",
            log_dropped.clone(),
        );
        registry.register(
            "ccc_parent_log_lines_malformed",
            "Lines on the log channel that were not records (dropped)",
            log_malformed.clone(),
        );
        registry.register(
            "ccc_parent_credentials_refreshes",
            "Credentials fetched from the parent's source (IMDS, environment, file)",
            credentials_refreshes.clone(),
        );
        registry.register(
            "ccc_parent_credentials_refresh_failures",
            "Credential fetches that failed",
            credentials_failures.clone(),
        );
        let live = Arc::new(Live {
            started: Instant::now(),
            heartbeat: Mutex::new(None),
            kms: Mutex::new(None),
            credentials_expiry: Mutex::new(None),
            proxy: Mutex::new(Vec::new()),
        });
        registry.register_collector(Box::new(Arc::clone(&live)));
        Self {
            registry,
            api_requests,
            api_duration,
            kms_calls,
            kms_duration,
            attestation_documents,
            log_records,
            log_dropped,
            log_malformed,
            credentials_refreshes,
            credentials_failures,
            live,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// The label set `names` = `values` for `family`, bounded: values that are not short
    /// names become `other`, and past [`MAX_SERIES`] sets a new one is all `other`.
    fn labels<const N: usize>(
        &self,
        family: &'static str,
        names: [&'static str; N],
        values: [Option<&str>; N],
    ) -> Labels {
        let labels: Labels = names
            .into_iter()
            .zip(values)
            .map(|(name, value)| (name, label_value(value)))
            .collect();
        let mut series = lock(&self.series);
        let seen = series.entry(family).or_default();
        if seen.contains(&labels) || seen.len() < MAX_SERIES {
            seen.insert(labels.clone());
            labels
        } else {
            names.into_iter().map(|n| (n, "other".to_owned())).collect()
        }
    }

    /// Counts one record received from the enclave: it is also a heartbeat.
    pub fn record(&self, record: &Received) {
        *lock(&self.live.heartbeat) = Some(Instant::now());
        self.log_records
            .get_or_create(&vec![("level", record.level.as_str().to_owned())])
            .inc();
        if record.dropped > 0 {
            self.log_dropped.inc_by(record.dropped);
        }
        let latency = record
            .fields
            .get("latency_seconds")
            .and_then(ccc_sdk::log::Value::as_f64)
            .filter(|x| x.is_finite() && *x >= 0.0);
        match record.event.as_str() {
            "api.request" => {
                let labels = self.labels(
                    "api",
                    ["operation", "outcome"],
                    [record.text("op"), record.text("outcome")],
                );
                self.api_requests.get_or_create(&labels).inc();
                if let Some(seconds) = latency {
                    self.api_duration.get_or_create(&labels).observe(seconds);
                }
            }
            "kms.call" => {
                let outcome = record
                    .text("outcome")
                    .and_then(Outcome::parse)
                    .map_or("other", Outcome::as_str);
                let labels = self.labels(
                    "kms",
                    ["operation", "outcome"],
                    [record.text("operation"), Some(outcome)],
                );
                self.kms_calls.get_or_create(&labels).inc();
                if let Some(seconds) = latency {
                    self.kms_duration.get_or_create(&labels).observe(seconds);
                }
                let operation = labels.first().map(|(_, v)| v.clone()).unwrap_or_default();
                *lock(&self.live.kms) = Some((Instant::now(), operation, outcome.to_owned()));
            }
            "attestation.document" => {
                let labels = self.labels("attestation", ["purpose"], [record.text("purpose")]);
                self.attestation_documents.get_or_create(&labels).inc();
            }
            _ => {}
        }
    }

    /// The enclave's boot heartbeat (vsock port 9000) arrived.
    pub fn heartbeat(&self) {
        *lock(&self.live.heartbeat) = Some(Instant::now());
    }

    /// A line on the log channel that is not a record.
    pub fn malformed_line(&self) {
        self.log_malformed.inc();
    }

    /// Credentials were fetched from the source; they expire at `expiration` (if known).
    pub fn credentials_refreshed(&self, expiration: Option<UnixMillis>) {
        self.credentials_refreshes.inc();
        *lock(&self.live.credentials_expiry) = expiration;
    }

    /// A credentials fetch failed.
    pub fn credentials_failed(&self) {
        self.credentials_failures.inc();
    }

    /// Adds a proxy's counters to the scrape.
    pub fn watch_proxy(&self, stats: Arc<Stats>) {
        lock(&self.live.proxy).push(stats);
    }

    /// The exposition text.
    ///
    /// # Errors
    /// The encoder failed (it writes to a `String`, which does not fail).
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// Whether the enclave is ready by `health`'s rule (module docs), and why.
    #[must_use]
    pub fn ready(&self, health: &Health) -> (bool, String) {
        self.ready_at(health, Instant::now())
    }

    /// [`Metrics::ready`] as of `now`.
    #[must_use]
    pub fn ready_at(&self, health: &Health, now: Instant) -> (bool, String) {
        let heartbeat = match *lock(&self.live.heartbeat) {
            None => {
                return (
                    false,
                    format!(
                        "no record from the enclave yet ({} s since the parent started): it \
                         sends a heartbeat every 10 s on the log channel; is it running \
                         (`nitro-cli describe-enclaves`) and is CCC_APP_LOG_PORT this parent's \
                         --log-port?",
                        now.saturating_duration_since(self.live.started).as_secs()
                    ),
                );
            }
            Some(at) => now.saturating_duration_since(at),
        };
        if heartbeat > health.heartbeat_max {
            return (
                false,
                format!(
                    "the enclave's last record came {} s ago (more than {} s): the enclave \
                     stopped, hangs, or cannot reach the log channel",
                    heartbeat.as_secs(),
                    health.heartbeat_max.as_secs()
                ),
            );
        }
        let kms = lock(&self.live.kms).clone();
        match kms {
            Some((at, operation, outcome))
                if now.saturating_duration_since(at) <= health.kms_window
                    && outcome != "ok"
                    && !Outcome::parse(&outcome).is_some_and(Outcome::is_callers_fault) =>
            {
                (
                    false,
                    format!(
                        "the last KMS call ({operation}, {} s ago) ended with {outcome}: see \
                         the enclave's kms.call and api.request records for KMS's message",
                        now.saturating_duration_since(at).as_secs()
                    ),
                )
            }
            Some((at, operation, outcome)) => (
                true,
                format!(
                    "ready: the enclave's last record came {} s ago; the last KMS call \
                     ({operation}, {} s ago) ended with {outcome}",
                    heartbeat.as_secs(),
                    now.saturating_duration_since(at).as_secs()
                ),
            ),
            None => (
                true,
                format!(
                    "ready: the enclave's last record came {} s ago; no KMS call yet",
                    heartbeat.as_secs()
                ),
            ),
        }
    }
}

/// A label value taken from a record: the text if it is a short name of
/// `[A-Za-z0-9_.-]`, else `other`.
fn label_value(value: Option<&str>) -> String {
    match value {
        Some(v)
            if !v.is_empty()
                && v.len() <= MAX_LABEL_LEN
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) =>
        {
            v.to_owned()
        }
        _ => "other".to_owned(),
    }
}

fn gauge(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: f64) -> fmt::Result {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &'static str,
    values: &[(&'static str, u64)],
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        ConstCounter::new(*n).encode(metric.encode_family(&vec![(label, *value)])?)?;
    }
    Ok(())
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let since = lock(&self.heartbeat).unwrap_or(self.started);
        gauge(
            &mut encoder,
            "ccc_enclave_heartbeat_age_seconds",
            "Seconds since the enclave's last record or boot heartbeat (since the parent started \
             while none came)",
            since.elapsed().as_secs_f64(),
        )?;
        if let Some(expiry) = *lock(&self.credentials_expiry) {
            let now = UnixMillis::now().0;
            #[expect(clippy::cast_precision_loss, reason = "seconds as a gauge")]
            let seconds = (i128::from(expiry.0) - i128::from(now)) as f64 / 1000.0;
            gauge(
                &mut encoder,
                "ccc_parent_credentials_expiry_seconds",
                "Seconds until the credentials the parent serves expire",
                seconds,
            )?;
        }
        let proxies = lock(&self.proxy).clone();
        if !proxies.is_empty() {
            let sum = |field: fn(&Stats) -> u64| proxies.iter().map(|s| field(s)).sum::<u64>();
            #[expect(clippy::cast_precision_loss, reason = "a connection count")]
            let active = sum(|s| s.active.load(Ordering::Relaxed)) as f64;
            gauge(
                &mut encoder,
                "ccc_parent_proxy_connections_active",
                "Proxied connections open now",
                active,
            )?;
            let total = ConstCounter::new(sum(|s| s.accepted.load(Ordering::Relaxed)));
            total.encode(encoder.encode_descriptor(
                "ccc_parent_proxy_connections",
                "Connections the proxy accepted",
                None,
                MetricType::Counter,
            )?)?;
            counter(
                &mut encoder,
                "ccc_parent_proxy_connections_refused",
                "Connections the proxy refused: not admitted by the allowlist (or a bad CONNECT), \
                 or over --max-connections",
                "reason",
                &[
                    ("allowlist", sum(|s| s.refused.load(Ordering::Relaxed))),
                    ("limit", sum(|s| s.over_limit.load(Ordering::Relaxed))),
                ],
            )?;
            let failed = ConstCounter::new(sum(|s| s.upstream_failed.load(Ordering::Relaxed)));
            failed.encode(encoder.encode_descriptor(
                "ccc_parent_proxy_upstream_failures",
                "Admitted connections whose destination could not be reached",
                None,
                MetricType::Counter,
            )?)?;
            counter(
                &mut encoder,
                "ccc_parent_proxy_bytes",
                "Bytes the proxy relayed, counted when a connection ends",
                "direction",
                &[
                    (
                        "to_destination",
                        sum(|s| s.bytes_up.load(Ordering::Relaxed)),
                    ),
                    ("to_enclave", sum(|s| s.bytes_down.load(Ordering::Relaxed))),
                ],
            )?;
        }
        Ok(())
    }
}

/// Checks that `address` is a loopback address: the metrics name the enclave's operations and
/// outcomes, which are the instance's business only (the CloudWatch agent scrapes locally).
///
/// # Errors
/// An [`ArgumentError`] naming the fix (a loopback address such as 127.0.0.1:9110).
pub fn check_listen(address: SocketAddr) -> Result<SocketAddr, ArgumentError> {
    if address.ip().is_loopback() {
        Ok(address)
    } else {
        Err(ArgumentError::new(
            &format!("--metrics-listen {address}"),
            "a loopback address such as 127.0.0.1:9110: the metrics endpoint listens on \
             loopback only; scrape it from this instance (the CloudWatch agent does)",
        ))
    }
}

/// Serves `/metrics`, `/healthz` and `/livez` on `listener` until the services stop.
///
/// # Errors
/// The accept thread could not be started.
pub fn serve(services: &mut Services, listener: TcpListener, health: Health) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let metrics = Arc::clone(services.metrics());
    let log = services.log().clone();
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    services.listen(crate::net::Bound::Tcp(listener), move |stream| {
        if open.fetch_add(1, Ordering::SeqCst) >= MAX_SCRAPES {
            open.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        let metrics = Arc::clone(&metrics);
        let open = Arc::clone(&open);
        let thread_log = log.clone();
        let spawned = std::thread::Builder::new()
            .name("ccc-parent-metrics".into())
            .stack_size(crate::service::CONNECTION_STACK)
            .spawn(move || {
                if let Err(e) = answer(stream, &metrics, &health) {
                    thread_log.line(format_args!("metrics: {e}"));
                }
                open.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            log.line(format_args!("metrics: cannot start a thread for a scrape"));
        }
    })
}

/// Reads one request head (bounded) and answers it; the connection is then closed.
fn answer(mut stream: Stream, metrics: &Metrics, health: &Health) -> io::Result<()> {
    stream.set_timeouts(REQUEST_TIMEOUT)?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_REQUEST_HEAD {
            return respond(&mut stream, 431, "text/plain", "request head too large\n");
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    if !matches!(request.parse(&head), Ok(httparse::Status::Complete(_))) {
        return respond(&mut stream, 400, "text/plain", "not an HTTP/1.1 request\n");
    }
    if request.method != Some("GET") {
        return respond(&mut stream, 405, "text/plain", "GET only\n");
    }
    let path = request.path.unwrap_or("/");
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    match path {
        "/metrics" => match metrics.encode() {
            Ok(text) => respond(&mut stream, 200, CONTENT_TYPE, &text),
            Err(_) => respond(&mut stream, 500, "text/plain", "encoding failed\n"),
        },
        "/healthz" => {
            let (ready, why) = metrics.ready(health);
            respond(
                &mut stream,
                if ready { 200 } else { 503 },
                "text/plain",
                &format!("{why}\n"),
            )
        }
        "/livez" => respond(&mut stream, 200, "text/plain", "live\n"),
        _ => respond(
            &mut stream,
            404,
            "text/plain",
            "not found: /metrics, /healthz, /livez\n",
        ),
    }
}

fn respond(stream: &mut Stream, status: u16, content_type: &str, body: &str) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ccc_sdk::log::{Level, Record};

    fn received(record: Record) -> Received {
        ccc_sdk::log::decode(record.encode(1, 0).as_bytes()).unwrap()
    }

    fn api(op: &str, outcome: &str) -> Received {
        received(
            Record::new(UnixMillis(0), Level::Info, "api.request", String::new())
                .field("op", op)
                .field("outcome", outcome)
                .field("latency_seconds", 0.02),
        )
    }

    fn kms(operation: &str, outcome: &str) -> Received {
        received(
            Record::new(UnixMillis(0), Level::Info, "kms.call", String::new())
                .field("operation", operation)
                .field("outcome", outcome)
                .field("latency_seconds", 0.05),
        )
    }

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .map(|l| l.rsplit(' ').next().unwrap_or_default())
    }

    #[test]
    fn records_become_counters_and_histograms() {
        let metrics = Metrics::new();
        metrics.record(&api("hmac", "ok"));
        metrics.record(&api("hmac", "ok"));
        metrics.record(&api("hmac", "kms_access_denied"));
        metrics.record(&kms("Decrypt", "access_denied"));
        metrics.record(&received(
            Record::new(
                UnixMillis(0),
                Level::Debug,
                "attestation.document",
                String::new(),
            )
            .field("purpose", "Decrypt"),
        ));
        let mut dropped = api("random", "ok");
        dropped.dropped = 7;
        metrics.record(&dropped);
        metrics.malformed_line();
        let text = metrics.encode().unwrap();
        assert_eq!(
            line(
                &text,
                r#"ccc_enclave_api_requests_total{operation="hmac",outcome="ok"}"#
            ),
            Some("2"),
            "{text}"
        );
        assert_eq!(
            line(
                &text,
                r#"ccc_enclave_kms_calls_total{operation="Decrypt",outcome="access_denied"}"#
            ),
            Some("1"),
            "{text}"
        );
        assert_eq!(
            line(
                &text,
                r#"ccc_enclave_api_request_duration_seconds_count{operation="hmac",outcome="ok"}"#
            ),
            Some("2"),
            "{text}"
        );
        assert_eq!(
            line(
                &text,
                r#"ccc_enclave_attestation_documents_total{purpose="Decrypt"}"#
            ),
            Some("1")
        );
        assert_eq!(
            line(&text, "ccc_enclave_log_records_dropped_total"),
            Some("7")
        );
        assert_eq!(
            line(&text, "ccc_parent_log_lines_malformed_total"),
            Some("1")
        );
        assert!(text.contains("# TYPE ccc_enclave_heartbeat_age_seconds gauge"));
        // Nothing is known about credentials yet: no expiry gauge rather than a made-up one.
        assert!(
            !text.contains("ccc_parent_credentials_expiry_seconds"),
            "{text}"
        );
        metrics.credentials_refreshed(Some(UnixMillis(UnixMillis::now().0 + 3_600_000)));
        let text = metrics.encode().unwrap();
        let expiry: f64 = line(&text, "ccc_parent_credentials_expiry_seconds ")
            .unwrap()
            .parse()
            .unwrap();
        assert!((3500.0..=3600.0).contains(&expiry), "{expiry}");
    }

    /// Label values are the enclave's (untrusted) text: odd ones become `other`, and a flood
    /// of distinct ones stops at MAX_SERIES label sets.
    #[test]
    fn label_values_from_the_enclave_are_bounded() {
        let metrics = Metrics::new();
        metrics.record(&api("drop table\"", "ok"));
        for n in 0..MAX_SERIES * 2 {
            metrics.record(&api(&format!("op{n}"), "ok"));
        }
        let text = metrics.encode().unwrap();
        let series = text
            .lines()
            .filter(|l| l.starts_with("ccc_enclave_api_requests_total{"))
            .count();
        assert_eq!(series, MAX_SERIES + 1, "{text}");
        assert!(text.contains(r#"ccc_enclave_api_requests_total{operation="other",outcome="ok"}"#));
        assert!(!text.contains("drop table"));
        // KMS outcomes must be ones the SDK defines.
        metrics.record(&kms("Decrypt", "made_up"));
        assert!(
            metrics
                .encode()
                .unwrap()
                .contains(r#"ccc_enclave_kms_calls_total{operation="Decrypt",outcome="other"}"#)
        );
    }

    #[test]
    fn readiness_needs_a_fresh_heartbeat_and_a_successful_last_kms_call() {
        let metrics = Metrics::new();
        let health = Health {
            heartbeat_max: Duration::from_secs(30),
            kms_window: Duration::from_secs(60),
        };
        let now = Instant::now();
        let (ready, why) = metrics.ready_at(&health, now);
        assert!(!ready);
        assert!(why.starts_with("no record from the enclave yet"), "{why}");
        metrics.heartbeat();
        let now = Instant::now();
        assert!(metrics.ready_at(&health, now).0);
        metrics.record(&kms("Decrypt", "access_denied"));
        let now = Instant::now();
        let (ready, why) = metrics.ready_at(&health, now);
        assert!(!ready);
        assert!(
            why.contains("(Decrypt, 0 s ago) ended with access_denied"),
            "{why}"
        );
        // A caller's bad ciphertext says nothing about the enclave.
        metrics.record(&kms("Decrypt", "invalid_ciphertext"));
        let now = Instant::now();
        assert!(metrics.ready_at(&health, now).0);
        metrics.record(&kms("Decrypt", "throttled"));
        let now = Instant::now();
        assert!(!metrics.ready_at(&health, now + Duration::from_secs(20)).0);
        // The heartbeat is stale after 30 s.
        let (ready, why) = metrics.ready_at(&health, now + Duration::from_secs(31));
        assert!(!ready);
        assert!(why.contains("came 31 s ago (more than 30 s)"), "{why}");
        // Out of its window a failure no longer counts (with a patient heartbeat rule).
        let patient = Health {
            heartbeat_max: Duration::from_secs(3600),
            ..health
        };
        let (ready, why) = metrics.ready_at(&patient, now + Duration::from_secs(61));
        assert!(ready, "{why}");
    }

    #[test]
    fn only_loopback_addresses_are_accepted() {
        assert!(check_listen("127.0.0.1:9110".parse().unwrap()).is_ok());
        assert!(check_listen("[::1]:9110".parse().unwrap()).is_ok());
        let error = check_listen("0.0.0.0:9110".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(error.contains("loopback only"), "{error}");
        assert!(error.contains("0.0.0.0:9110"), "{error}");
    }
}
