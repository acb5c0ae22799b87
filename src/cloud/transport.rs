//! The one HTTP layer every cloud call goes through: a shared
//! `reqwest::Client` (plus one per custom CA / `verify: false`), a per-host
//! token bucket, retries with exponential backoff and jitter that honour
//! `Retry-After`, a write fence, and a hook that observes every attempt and
//! every wait on the bucket (for metrics).
//!
//! Retry rules:
//! - A request not marked idempotent (POST; identity logins are marked
//!   idempotent, a second token is harmless) is **sent at most once**. Only
//!   an attempt whose connection was never established (nothing was sent)
//!   is tried again. A 429, 503 or 413-with-`Retry-After` answer, and any
//!   failure after the request may have left, go back to the caller: a
//!   proxy may answer 503 after forwarding, and resending would make a
//!   duplicate. The error carries `retry_after` (the cloud's, else the
//!   backoff) so the caller requeues; a lost answer is
//!   [`CloudError::Transport`], and the caller's crash-safe adopt logic
//!   decides what happened.
//! - Idempotent requests (GET, HEAD, PUT, DELETE, PATCH) are retried on 429,
//!   503 and 413-with-`Retry-After`, and on transport failures (refused,
//!   reset, timeout, dropped answer). A 413 without `Retry-After` is
//!   Cinder's "quota exceeded" and is never retried.
//! - TLS failures and names that do not resolve are not retried at all:
//!   [`CloudError::TlsFailure`] and [`CloudError::HostNotFound`] need a
//!   person.
//! - Time inside one call is bounded: the sleeps between its retries add up
//!   to at most [`RetryPolicy::max_total_wait`] (2 s by default), and no
//!   single sleep is longer than [`RetryPolicy::max_backoff`]. A longer wait
//!   (a `Retry-After`, or the next backoff) is not slept: the answer goes
//!   back with `retry_after` so the caller requeues instead of holding its
//!   slot.
//! - The write fence ([`CloudHttp::set_write_fence`]) is asked before every
//!   attempt of a request that is not a GET or HEAD: when it is closed, the
//!   attempt is not sent and the call fails with [`CloudError::NotLeader`].
//!   Identity logins are not writes and pass.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Once, RwLock};
use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use tokio::time::Instant;

use super::credentials::CaBundle;
use super::error::{CloudError, parse_retry_after};

/// Which service a request is for (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Identity,
    BlockStorage,
    Image,
}

impl Service {
    pub fn as_str(&self) -> &'static str {
        match self {
            Service::Identity => "identity",
            Service::BlockStorage => "block-storage",
            Service::Image => "image",
        }
    }
}

/// How often and how long to retry.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    /// Wait before the first retry; doubles each time (with jitter).
    pub initial_backoff: Duration,
    /// Longest single wait, for backoff and for `Retry-After`.
    pub max_backoff: Duration,
    /// Longest time one call spends sleeping between its retries, all
    /// sleeps together. A wait that would go past it is handed back to the
    /// caller as `retry_after` instead: a reconcile slot is not held for it.
    pub max_total_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_total_wait: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// Millisecond waits, for tests.
    pub fn fast() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_secs(3),
            max_total_wait: Duration::from_secs(3),
        }
    }

    /// Backoff before retry number `retry` (1-based): exponential, with
    /// "equal jitter" (between half and all of the exponential value).
    fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)));
        let cap = exp.min(self.max_backoff);
        let half = cap / 2;
        let jitter = rand::rng().random_range(0..=millis(half).max(1));
        half.saturating_add(Duration::from_millis(jitter))
            .min(self.max_backoff)
    }

    /// Whether to sleep `wait` now, having slept `slept` in this call.
    fn may_sleep(&self, wait: Duration, slept: Duration) -> bool {
        wait <= self.max_backoff && slept.saturating_add(wait) <= self.max_total_wait
    }
}

/// Whole milliseconds, saturating (for logs and jitter).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Requests per second allowed to each host, with a burst.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: 20.0,
            burst: 40.0,
        }
    }
}

impl RateLimit {
    /// The limit as the bucket uses it: a rate between one request per
    /// 1000 s and a million per second, a burst of at least one, and the
    /// default for values that are not numbers.
    fn sane(&self) -> (f64, f64) {
        let default = RateLimit::default();
        let per_second = if self.per_second.is_nan() {
            default.per_second
        } else {
            self.per_second.clamp(0.001, 1e6)
        };
        let burst = if self.burst.is_nan() {
            default.burst
        } else {
            self.burst.clamp(1.0, 1e6)
        };
        (per_second, burst)
    }
}

/// The largest answer read (32 MiB): a larger one is refused, not buffered.
pub const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct TransportConfig {
    pub connect_timeout: Duration,
    /// Whole request, answer included.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// `None` turns rate limiting off.
    pub rate_limit: Option<RateLimit>,
    pub user_agent: String,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            rate_limit: Some(RateLimit::default()),
            user_agent: concat!("cloudvol/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// One HTTP attempt, as the observer sees it.
#[derive(Debug, Clone)]
pub struct RequestRecord<'a> {
    pub service: &'static str,
    pub method: &'a str,
    pub host: &'a str,
    /// `None` when no answer came (connection error, timeout, drop).
    pub status: Option<u16>,
    /// 1 for the first try.
    pub attempt: u32,
    pub elapsed: Duration,
}

/// Sees every attempt; the operator turns these into Prometheus counters.
pub trait RequestObserver: Send + Sync {
    fn observe(&self, record: &RequestRecord<'_>);

    /// A request to `host` waited `waited` for the host's rate-limit bucket
    /// before it was sent (called only for a wait longer than zero).
    fn observe_rate_limit_wait(&self, host: &str, waited: Duration) {
        let _ = (host, waited);
    }
}

impl<F> RequestObserver for F
where
    F: Fn(&RequestRecord<'_>) + Send + Sync,
{
    fn observe(&self, record: &RequestRecord<'_>) {
        self(record)
    }
}

/// Says whether this process may write to clouds now: `true` while it
/// holds the leader Lease. Asked before every attempt of a request that is
/// not a GET or HEAD; keep it cheap (an atomic or a `watch` read).
pub type WriteFence = Arc<dyn Fn() -> bool + Send + Sync>;

/// A request body, kept as bytes so that retries can send it again.
#[derive(Clone)]
pub(crate) struct Body {
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

impl Body {
    pub(crate) fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Body, CloudError> {
        Self::json_as("application/json", value)
    }

    pub(crate) fn json_as<T: serde::Serialize + ?Sized>(
        content_type: &'static str,
        value: &T,
    ) -> Result<Body, CloudError> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| CloudError::decode(format!("cannot encode request body: {e}")))?;
        Ok(Body {
            content_type,
            bytes,
        })
    }
}

pub(crate) struct HttpRequest {
    pub service: Service,
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Body>,
    /// Safe to send twice. Defaults from the method; identity logins set it.
    pub idempotent: bool,
    /// Changes the cloud, so the write fence must be open. Defaults to
    /// "not GET or HEAD"; identity logins clear it.
    pub write: bool,
}

impl HttpRequest {
    pub(crate) fn new(service: Service, method: Method, url: Url) -> Self {
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::PATCH
        );
        let write = !matches!(method, Method::GET | Method::HEAD);
        HttpRequest {
            service,
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
            idempotent,
            write,
        }
    }

    /// An identity service's token request: harmless to repeat, and not a
    /// write (it changes nothing a reconcile manages).
    pub(crate) fn login(url: Url, body: Body) -> Self {
        let mut req = HttpRequest::new(Service::Identity, Method::POST, url);
        req.body = Some(body);
        req.idempotent = true;
        req.write = false;
        req
    }
}

pub(crate) struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// When the transport gave up retrying a retryable answer (or would
    /// not resend it): how long to wait before the next try.
    pub retry_after: Option<Duration>,
}

impl HttpResponse {
    pub(crate) fn error(&self) -> CloudError {
        CloudError::from_response(self.status, &self.headers, &self.body)
            .or_retry_after(self.retry_after)
    }

    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, CloudError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            CloudError::decode(format!(
                "cannot read the answer (HTTP {}): {e}",
                self.status.as_u16()
            ))
        })
    }
}

/// Signs one attempt (SCP): returns the headers to add for this method and URL.
pub(crate) type Signer<'a> = &'a (dyn Fn(&Method, &Url) -> Result<HeaderMap, CloudError> + Sync);

/// The process-wide HTTP layer. Cheap to clone; build it once.
#[derive(Clone)]
pub struct CloudHttp {
    inner: Arc<Inner>,
}

struct Inner {
    config: TransportConfig,
    default_client: reqwest::Client,
    /// Clients for a custom CA and/or `verify: false`, by CA fingerprint.
    custom_clients: Mutex<HashMap<String, reqwest::Client>>,
    buckets: Mutex<HashMap<String, Bucket>>,
    observer: RwLock<Option<Arc<dyn RequestObserver>>>,
    fence: RwLock<Option<WriteFence>>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

static CRYPTO_PROVIDER: Once = Once::new();

/// rustls needs a process-wide crypto provider before the first client.
fn install_crypto_provider() {
    CRYPTO_PROVIDER.call_once(|| {
        // Err means another part of the process installed one first: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A DNS failure, as the resolver reports it to the transport.
#[derive(Debug)]
pub(crate) struct DnsFailure {
    pub host: String,
    pub message: String,
    /// The resolver could not answer now (EAI_AGAIN): an outage, not a
    /// wrong name.
    pub temporary: bool,
}

impl std::fmt::Display for DnsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot resolve `{}`: {}", self.host, self.message)
    }
}

impl std::error::Error for DnsFailure {}

/// The system resolver (as reqwest's default), with an error the transport
/// recognises, so that a name that does not exist becomes `HostNotFound`.
/// Names under `.invalid` are refused without a lookup (RFC 6761 §6.4).
struct Resolver;

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let failure =
                |message: String, temporary: bool| -> Box<dyn std::error::Error + Send + Sync> {
                    Box::new(DnsFailure {
                        host: host.clone(),
                        message,
                        temporary,
                    })
                };
            let lower = host.trim_end_matches('.').to_ascii_lowercase();
            if lower == "invalid" || lower.ends_with(".invalid") {
                return Err(failure(
                    "names under .invalid never resolve (RFC 6761)".into(),
                    false,
                ));
            }
            match tokio::net::lookup_host((host.as_str(), 0)).await {
                Ok(addrs) => {
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    if addrs.is_empty() {
                        Err(failure("no address".into(), false))
                    } else {
                        Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    let temporary = matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
                    ) || message.contains("Temporary failure")
                        || message.contains("try again");
                    Err(failure(message, temporary))
                }
            }
        })
    }
}

impl CloudHttp {
    pub fn new(config: TransportConfig) -> Result<Self, CloudError> {
        install_crypto_provider();
        let default_client = Self::builder(&config)
            .build()
            .map_err(|e| CloudError::config(format!("cannot build the HTTP client: {e}")))?;
        Ok(CloudHttp {
            inner: Arc::new(Inner {
                config,
                default_client,
                custom_clients: Mutex::new(HashMap::new()),
                buckets: Mutex::new(HashMap::new()),
                observer: RwLock::new(None),
                fence: RwLock::new(None),
            }),
        })
    }

    pub fn config(&self) -> &TransportConfig {
        &self.inner.config
    }

    /// Installs the hook that sees every attempt (replaces any previous one).
    pub fn set_request_observer(&self, observer: Arc<dyn RequestObserver>) {
        let mut slot = self
            .inner
            .observer
            .write()
            .unwrap_or_else(|e| e.into_inner());
        *slot = Some(observer);
    }

    /// Installs the write fence (replaces any previous one). Without one,
    /// every write is sent.
    pub fn set_write_fence(&self, fence: WriteFence) {
        let mut slot = self.inner.fence.write().unwrap_or_else(|e| e.into_inner());
        *slot = Some(fence);
    }

    /// A write fence that follows a `watch` channel: open while it holds
    /// `true` (the operator's "I hold the Lease").
    pub fn set_write_fence_watch(&self, leading: tokio::sync::watch::Receiver<bool>) {
        self.set_write_fence(Arc::new(move || *leading.borrow()));
    }

    fn writes_allowed(&self) -> bool {
        let fence = self
            .inner
            .fence
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        fence.is_none_or(|open| open())
    }

    fn observer(&self) -> Option<Arc<dyn RequestObserver>> {
        self.inner
            .observer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn builder(config: &TransportConfig) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            // Shorter than the idle timeouts of common load balancers (60 s
            // and more), so that a POST is rarely sent on a connection the
            // server is closing: that would surface as a lost answer.
            .pool_idle_timeout(Duration::from_secs(30))
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(config.user_agent.clone())
            .dns_resolver(Resolver)
    }

    /// The client for a cloud: the shared one, unless the cloud brings its
    /// own CA or turns verification off.
    pub(crate) fn client_for(
        &self,
        cloud_name: &str,
        cacert: Option<&CaBundle>,
        verify: bool,
    ) -> Result<reqwest::Client, CloudError> {
        if !verify {
            tracing::warn!(
                cloud = cloud_name,
                "TLS certificate verification is disabled for this cloud (verify: false); \
                 its traffic can be intercepted"
            );
        }
        if cacert.is_none() && verify {
            return Ok(self.inner.default_client.clone());
        }
        let key = format!(
            "verify={verify}|ca={}",
            cacert.map(CaBundle::fingerprint).unwrap_or_default()
        );
        let mut clients = self
            .inner
            .custom_clients
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let mut builder = Self::builder(&self.inner.config);
        if let Some(ca) = cacert {
            let certs = reqwest::Certificate::from_pem_bundle(ca.pem()).map_err(|e| {
                CloudError::config(format!("cloud `{cloud_name}`: cannot read `cacert`: {e}"))
            })?;
            builder = builder.tls_certs_merge(certs);
        }
        if !verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let client = builder.build().map_err(|e| {
            CloudError::config(format!(
                "cloud `{cloud_name}`: cannot build its HTTP client: {e}"
            ))
        })?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Waits for a token of `host`'s bucket, and tells the observer how
    /// long that took.
    async fn acquire(&self, host: &str) {
        let Some(limit) = &self.inner.config.rate_limit else {
            return;
        };
        let (per_second, burst) = limit.sane();
        let wait = {
            let mut buckets = self.inner.buckets.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let bucket = buckets.entry(host.to_string()).or_insert(Bucket {
                tokens: burst,
                last: now,
            });
            let refill = now.duration_since(bucket.last).as_secs_f64() * per_second;
            bucket.tokens = (bucket.tokens + refill).min(burst);
            bucket.last = now;
            // Taking a token we do not have yet reserves the next one: the
            // wait is how long the bucket needs to refill to zero.
            bucket.tokens -= 1.0;
            if bucket.tokens >= 0.0 {
                Duration::ZERO
            } else {
                // Finite: the rate is at least 0.001/s and the deficit is
                // one token per waiting request.
                Duration::try_from_secs_f64(-bucket.tokens / per_second).unwrap_or(Duration::MAX)
            }
        };
        if wait.is_zero() {
            return;
        }
        tracing::debug!(host, wait_ms = millis(wait), "rate limit");
        let started = Instant::now();
        tokio::time::sleep(wait).await;
        if let Some(observer) = self.observer() {
            observer.observe_rate_limit_wait(host, started.elapsed());
        }
    }

    fn observe(&self, req: &HttpRequest, status: Option<u16>, attempt: u32, elapsed: Duration) {
        if let Some(observer) = self.observer() {
            observer.observe(&RequestRecord {
                service: req.service.as_str(),
                method: req.method.as_str(),
                host: req.url.host_str().unwrap_or(""),
                status,
                attempt,
                elapsed,
            });
        }
    }

    /// Sends `req`, retrying as the module doc says. Returns the final
    /// answer whatever its status (with `retry_after` set when a retryable
    /// answer was handed back); only "no answer" is an error.
    pub(crate) async fn execute(
        &self,
        client: &reqwest::Client,
        req: &HttpRequest,
        signer: Option<Signer<'_>>,
    ) -> Result<HttpResponse, CloudError> {
        let policy = &self.inner.config.retry;
        let host = req.url.host_str().unwrap_or("").to_string();
        let max_attempts = policy.max_attempts.max(1);
        let mut attempt: u32 = 0;
        let mut slept = Duration::ZERO;
        loop {
            attempt = attempt.saturating_add(1);
            self.acquire(&host).await;
            if req.write && !self.writes_allowed() {
                return Err(CloudError::NotLeader {
                    message: format!(
                        "this replica does not hold the leader Lease: {} {} was not sent",
                        req.method,
                        req.url.path()
                    ),
                });
            }
            let mut builder = client
                .request(req.method.clone(), req.url.clone())
                .headers(req.headers.clone());
            if let Some(sign) = signer {
                builder = builder.headers(sign(&req.method, &req.url)?);
            }
            if let Some(body) = &req.body {
                builder = builder
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        HeaderValue::from_static(body.content_type),
                    )
                    .body(body.bytes.clone());
            }
            let started = Instant::now();
            let outcome = match builder.send().await {
                Ok(resp) => read_answer(resp).await,
                Err(e) => Err(e),
            };
            let elapsed = started.elapsed();
            let last = attempt >= max_attempts;
            match outcome {
                Ok(Answer::TooLarge { status }) => {
                    self.observe(req, Some(status.as_u16()), attempt, elapsed);
                    return Err(CloudError::decode(format!(
                        "the answer (HTTP {}) is larger than {} MiB; not read",
                        status.as_u16(),
                        MAX_ANSWER_BYTES / (1024 * 1024)
                    )));
                }
                Ok(Answer::Read(mut resp)) => {
                    self.observe(req, Some(resp.status.as_u16()), attempt, elapsed);
                    let retry_after = resp
                        .headers
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
                    let retryable = match resp.status.as_u16() {
                        429 | 503 => true,
                        413 => retry_after.is_some(),
                        _ => false,
                    };
                    if !retryable {
                        return Ok(resp);
                    }
                    let wait = retry_after.unwrap_or_else(|| policy.backoff(attempt));
                    let give_back = if !req.idempotent {
                        Some("not resent: the request may have been acted on")
                    } else if last {
                        Some("out of attempts")
                    } else if !policy.may_sleep(wait, slept) {
                        Some("the wait is longer than this call may sleep")
                    } else {
                        None
                    };
                    if let Some(why) = give_back {
                        tracing::debug!(
                            service = req.service.as_str(),
                            method = %req.method,
                            url = %req.url,
                            status = resp.status.as_u16(),
                            attempt,
                            retry_after_ms = millis(wait),
                            "handing the retry back to the caller: {why}"
                        );
                        resp.retry_after = Some(wait);
                        return Ok(resp);
                    }
                    tracing::debug!(
                        service = req.service.as_str(),
                        method = %req.method,
                        url = %req.url,
                        status = resp.status.as_u16(),
                        attempt,
                        wait_ms = millis(wait),
                        "retrying"
                    );
                    tokio::time::sleep(wait).await;
                    slept = slept.saturating_add(wait);
                }
                Err(e) => {
                    self.observe(req, None, attempt, elapsed);
                    let mut err = CloudError::from_reqwest(&e, &host);
                    // TLS and DNS failures: retrying cannot fix them.
                    if !err.is_transient() {
                        return Err(err);
                    }
                    // is_connect: the request never left; anything else may
                    // have reached the cloud.
                    let never_sent = e.is_connect();
                    if !never_sent && !req.idempotent {
                        if let CloudError::Transport { message } = &mut err {
                            message
                                .push_str(" (the request may have reached the cloud; not retried)");
                        }
                        return Err(err);
                    }
                    let wait = policy.backoff(attempt);
                    if last || !policy.may_sleep(wait, slept) {
                        return Err(err);
                    }
                    tracing::debug!(
                        service = req.service.as_str(),
                        method = %req.method,
                        url = %req.url,
                        error = %e,
                        attempt,
                        wait_ms = millis(wait),
                        "retrying after a transport error"
                    );
                    tokio::time::sleep(wait).await;
                    slept = slept.saturating_add(wait);
                }
            }
        }
    }
}

enum Answer {
    Read(HttpResponse),
    TooLarge { status: StatusCode },
}

/// Reads an answer's body, refusing one larger than [`MAX_ANSWER_BYTES`]
/// (by its `Content-Length`, or while reading it).
async fn read_answer(mut resp: reqwest::Response) -> Result<Answer, reqwest::Error> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let declared = resp
        .content_length()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0);
    if declared > MAX_ANSWER_BYTES {
        return Ok(Answer::TooLarge { status });
    }
    // A declared length is a hint, not a promise: reserve at most 1 MiB.
    let mut body = Vec::with_capacity(declared.min(1024 * 1024));
    while let Some(chunk) = resp.chunk().await? {
        if body.len().saturating_add(chunk.len()) > MAX_ANSWER_BYTES {
            return Ok(Answer::TooLarge { status });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer::Read(HttpResponse {
        status,
        headers,
        body,
        retry_after: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::CloudCredentials;

    /// A self-signed CA made for this test (`openssl req -x509 -newkey ec ...`).
    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBjDCCATGgAwIBAgIUTeTlLlwh0Zmr7E4PIbtpeK/iMQ0wCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQY2xvdWR2b2wtdGVzdC1jYTAeFw0yNjExMjIyMTUyNTVaFw0z
NjExMTkyMTUyNTVaMBsxGTAXBgNVBAMMEGNsb3Vkdm9sLXRlc3QtY2EwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAAQ6wylMmcHbyttEgJ4e71BXEWceZnVcKX7FxsLz
wiS9/XSNPSriWCzzNw0A6ITEDR0IpYXLvgYRH9s2S5BOtfwto1MwUTAdBgNVHQ4E
FgQU1Qj8PsL2BxYDMTMY133fhilbC3UwHwYDVR0jBBgwFoAU1Qj8PsL2BxYDMTMY
133fhilbC3UwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNJADBGAiEAiW1O
JP06EFQoxvzbTAmAx4uESIaBloI+rN5zBe8KBcECIQCFcTQywDVK6abWTaMCCLe/
n3YATNZNA8oBJvAzleb41A==
-----END CERTIFICATE-----
";

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn custom_tls_gets_its_own_cached_client_and_verify_false_is_logged() {
        let yaml = "clouds:\n  c:\n    auth:\n      auth_url: https://k/v3\n      user_id: u\n      password: p\n      project_id: p\n";
        let with_ca =
            CloudCredentials::from_clouds_yaml(yaml.as_bytes(), "c", Some(TEST_CA.as_bytes()))
                .unwrap();
        let http = CloudHttp::new(TransportConfig::default()).unwrap();
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            http.client_for("c", None, true).unwrap();
            http.client_for("c", with_ca.cacert.as_ref(), true).unwrap();
            http.client_for("c", with_ca.cacert.as_ref(), true).unwrap();
            assert_eq!(http.inner.custom_clients.lock().unwrap().len(), 1);
            assert!(capture.0.lock().unwrap().is_empty());
            http.client_for("insecure-cloud", None, false).unwrap();
            assert_eq!(http.inner.custom_clients.lock().unwrap().len(), 2);
        });
        let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        assert!(logs.contains("WARN"), "{logs}");
        assert!(logs.contains("verification is disabled"), "{logs}");
        assert!(logs.contains("insecure-cloud"), "{logs}");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let first = p.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = p.backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            assert!(p.backoff(30) <= Duration::from_secs(1));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_token_bucket_allows_a_burst_then_paces() {
        let http = CloudHttp::new(TransportConfig {
            rate_limit: Some(RateLimit {
                per_second: 10.0,
                burst: 3.0,
            }),
            ..Default::default()
        })
        .unwrap();
        let start = Instant::now();
        for _ in 0..3 {
            http.acquire("a").await;
        }
        assert!(start.elapsed() < Duration::from_millis(1));
        http.acquire("a").await;
        http.acquire("a").await;
        let paced = start.elapsed();
        assert!(
            paced >= Duration::from_millis(190) && paced < Duration::from_millis(250),
            "{paced:?}"
        );
        // Another host has its own bucket.
        let before = Instant::now();
        http.acquire("b").await;
        assert!(before.elapsed() < Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_nonsense_rate_limit_neither_panics_nor_stops_requests() {
        for (per_second, burst) in [
            (0.0, 0.0),
            (-5.0, -1.0),
            (f64::NAN, f64::NAN),
            (f64::INFINITY, f64::INFINITY),
            (f64::MIN_POSITIVE, 1.0),
        ] {
            let http = CloudHttp::new(TransportConfig {
                rate_limit: Some(RateLimit { per_second, burst }),
                ..Default::default()
            })
            .unwrap();
            let start = Instant::now();
            http.acquire("a").await;
            http.acquire("a").await;
            // At worst one request per 1000 s: a wait, never a hang forever.
            assert!(start.elapsed() <= Duration::from_secs(1001), "{per_second}");
        }
    }
}
