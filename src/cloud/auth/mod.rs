//! Authentication: token logins (NHN Keystone v2.0, Keystone v3), the token
//! cache with early refresh and single-flight, the backoff of refused
//! credentials, and SCP request signing.

pub(crate) mod backoff;
pub(crate) mod catalog;
pub(crate) mod keystone_v3;
pub(crate) mod nhn_v2;
pub(crate) mod scp;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use tokio::time::Instant;

use self::catalog::Catalog;
use super::credentials::{Auth, SecretString};
use super::error::CloudError;
use super::transport::{CloudHttp, HttpResponse};

/// Longest early refresh; tokens are renewed this long (or 10% of their
/// lifetime, whichever is shorter) before they expire.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// Lifetime assumed when the identity service gives no readable expiry.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// Shortest lifetime believed: a token is kept at least this long, so that
/// a cloud that issues nearly expired tokens cannot make every call log in.
const MIN_LIFETIME: Duration = Duration::from_secs(1);
/// Longest lifetime believed: whatever the expiry says (year 9999 included),
/// the token is renewed at least daily.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// Lifetime used when the expiry is at or before the issue time (or, with
/// no issue time, before our clock's now): the clocks disagree or the answer
/// is wrong. The token is tried for this long; a 401 renews it sooner.
const UNBELIEVABLE_EXPIRY_LIFETIME: Duration = Duration::from_secs(60);

/// What a login returns.
pub(crate) struct LoginAnswer {
    pub token: SecretString,
    pub project_id: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub issued_at: Option<DateTime<Utc>>,
    pub catalog: Catalog,
}

/// A cached token with its catalog.
#[derive(Debug)]
pub(crate) struct Token {
    pub id: SecretString,
    pub project_id: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// When to stop using it and log in again.
    pub refresh_at: Instant,
    pub catalog: Catalog,
}

impl Token {
    pub(crate) fn from_login(answer: LoginAnswer, now: Instant) -> Token {
        let lifetime = token_lifetime(answer.issued_at, answer.expires_at, Utc::now());
        Token {
            id: answer.token,
            project_id: answer.project_id,
            expires_at: answer.expires_at,
            refresh_at: now
                .checked_add(lifetime.saturating_sub(refresh_margin(lifetime)))
                .unwrap_or(now),
            catalog: answer.catalog,
        }
    }

    fn is_fresh(&self, now: Instant) -> bool {
        now < self.refresh_at
    }
}

/// The token's lifetime, measured on the identity service's own clock when
/// it says when the token was issued (immune to skew with our clock), and
/// always between [`MIN_LIFETIME`] and [`MAX_LIFETIME`].
pub(crate) fn token_lifetime(
    issued_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Duration {
    let Some(expires) = expires_at else {
        return DEFAULT_LIFETIME;
    };
    let from = issued_at.unwrap_or(now);
    match expires.signed_duration_since(from).to_std() {
        Ok(lifetime) if !lifetime.is_zero() => lifetime.clamp(MIN_LIFETIME, MAX_LIFETIME),
        _ => UNBELIEVABLE_EXPIRY_LIFETIME,
    }
}

pub(crate) fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).min(MAX_REFRESH_MARGIN)
}

/// Timestamps as identity services write them: RFC 3339, or without a zone
/// (UTC), with or without fractional seconds.
pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let s = s.trim_end_matches('Z');
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(|t| t.and_utc())
}

/// An identity service's refusal: 401 means the credentials are wrong, 403
/// that they may not have a token for that project (a disabled user, no
/// role in the project). Both need a person.
pub(crate) fn login_error(resp: &HttpResponse) -> CloudError {
    match resp.error() {
        CloudError::Unauthorized { message } => CloudError::InvalidCredentials {
            message: format!("the identity service answered 401: {message}"),
            retry_after: None,
        },
        CloudError::Forbidden { message } => CloudError::InvalidCredentials {
            message: format!("the identity service answered 403: {message}"),
            retry_after: None,
        },
        other => other,
    }
}

pub(crate) async fn login(
    http: &CloudHttp,
    client: &reqwest::Client,
    auth: &Auth,
) -> Result<LoginAnswer, CloudError> {
    match auth {
        Auth::NhnV2(a) => nhn_v2::login(http, client, a).await,
        Auth::KeystonePassword(a) => keystone_v3::login_password(http, client, a).await,
        Auth::KeystoneApplicationCredential(a) => {
            keystone_v3::login_application_credential(http, client, a).await
        }
        Auth::Scp(_) => Err(CloudError::unsupported(
            "SCP signs each request and has no token",
        )),
    }
}

/// The token of one set of credentials, shared by every session using them.
/// The async mutex makes a refresh single-flight: callers that find the
/// token stale queue on the lock, and all but the first find it fresh.
#[derive(Default)]
pub(crate) struct TokenSlot {
    current: tokio::sync::Mutex<Option<Arc<Token>>>,
}

impl TokenSlot {
    /// A fresh token, logging in with `login` when there is none.
    pub(crate) async fn get<F, Fut>(&self, login: F) -> Result<Arc<Token>, CloudError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<LoginAnswer, CloudError>>,
    {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref()
            && token.is_fresh(Instant::now())
        {
            return Ok(token.clone());
        }
        let answer = login().await?;
        let token = Arc::new(Token::from_login(answer, Instant::now()));
        tracing::debug!(
            expires_at = ?token.expires_at,
            project_id = ?token.project_id,
            "obtained a token"
        );
        *current = Some(token.clone());
        Ok(token)
    }

    /// Drops `stale` (a token a service refused) unless another caller
    /// already replaced it.
    pub(crate) async fn invalidate(&self, stale: &Arc<Token>) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|t| Arc::ptr_eq(t, stale)) {
            *current = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn answer() -> LoginAnswer {
        let issued = parse_time("2024-01-01T00:00:00Z").unwrap();
        LoginAnswer {
            token: SecretString::new("tok-secret-123"),
            project_id: Some("p".into()),
            issued_at: Some(issued),
            expires_at: Some(issued + chrono::Duration::seconds(3600)),
            catalog: Catalog::default(),
        }
    }

    #[test]
    fn times_in_identity_formats_parse() {
        assert!(parse_time("2015-11-09T01:42:57.527363Z").is_some());
        assert!(parse_time("2020-03-04T10:54:33Z").is_some());
        assert!(parse_time("2018-12-18T05:43:12.000000").is_some());
        assert!(parse_time("2018-12-18T05:43:12+09:00").is_some());
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn tokens_refresh_early() {
        assert_eq!(
            refresh_margin(Duration::from_secs(3600)),
            Duration::from_secs(300)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(2)),
            Duration::from_millis(200)
        );
        let now = Instant::now();
        let t = Token::from_login(answer(), now);
        assert_eq!(t.refresh_at - now, Duration::from_secs(3300));
    }

    #[test]
    fn lifetime_uses_the_servers_clock_when_it_can() {
        let issued = parse_time("2024-01-01T00:00:00Z").unwrap();
        let expires = issued + chrono::Duration::seconds(60);
        let far_future_now = issued + chrono::Duration::days(1);
        assert_eq!(
            token_lifetime(Some(issued), Some(expires), far_future_now),
            Duration::from_secs(60)
        );
        assert_eq!(
            token_lifetime(None, Some(expires), issued),
            Duration::from_secs(60)
        );
        assert_eq!(token_lifetime(None, None, issued), DEFAULT_LIFETIME);
    }

    #[test]
    fn hostile_expiries_give_a_lifetime_within_bounds() {
        let issued = parse_time("2024-01-01T00:00:00Z").unwrap();
        let far = parse_time("9999-12-31T23:59:59Z").unwrap();
        let secs = |n| issued + chrono::Duration::seconds(n);
        // Far future, with or without the issue time: a day at most.
        assert_eq!(
            token_lifetime(Some(issued), Some(far), issued),
            MAX_LIFETIME
        );
        assert_eq!(token_lifetime(None, Some(far), issued), MAX_LIFETIME);
        assert_eq!(
            token_lifetime(Some(issued), Some(chrono::DateTime::<Utc>::MAX_UTC), issued),
            MAX_LIFETIME
        );
        // In the past, or equal to the issue time: not believed.
        for expires in [secs(-1), issued, chrono::DateTime::<Utc>::MIN_UTC] {
            assert_eq!(
                token_lifetime(Some(issued), Some(expires), issued),
                UNBELIEVABLE_EXPIRY_LIFETIME
            );
            assert_eq!(
                token_lifetime(None, Some(expires), issued),
                UNBELIEVABLE_EXPIRY_LIFETIME
            );
        }
        // Issued in the far future by a broken clock: still bounded.
        assert_eq!(
            token_lifetime(Some(far), Some(secs(3600)), issued),
            UNBELIEVABLE_EXPIRY_LIFETIME
        );
        // Nearly expired: kept a second at least.
        assert_eq!(
            token_lifetime(
                Some(issued),
                Some(issued + chrono::Duration::milliseconds(3)),
                issued
            ),
            MIN_LIFETIME
        );
        // Malformed expiries do not parse, and then the default applies.
        for text in [
            "",
            "never",
            "9999999-01-01T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:61:00",
        ] {
            assert_eq!(parse_time(text), None, "{text}");
        }
        assert_eq!(token_lifetime(Some(issued), None, issued), DEFAULT_LIFETIME);
        // A token whose expiry is a day away refreshes before it, without overflow.
        let now = Instant::now();
        let mut a = answer();
        a.expires_at = Some(far);
        let t = Token::from_login(a, now);
        assert!(t.refresh_at > now && t.refresh_at - now <= MAX_LIFETIME);
    }

    #[test]
    fn a_token_never_shows_in_debug() {
        let t = Token::from_login(answer(), Instant::now());
        assert!(!format!("{t:?}").contains("tok-secret-123"), "{t:?}");
        assert!(format!("{t:?}").contains("<redacted>"));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_login_and_refresh() {
        let slot = Arc::new(TokenSlot::default());
        let logins = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let slot = slot.clone();
            let logins = logins.clone();
            tasks.push(tokio::spawn(async move {
                slot.get(|| async {
                    logins.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(answer())
                })
                .await
                .map(|t| t.id.expose().to_string())
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), "tok-secret-123");
        }
        assert_eq!(logins.load(Ordering::SeqCst), 1);

        // Invalidation by many callers holding the same stale token: one login.
        let stale = slot.get(|| async { Ok(answer()) }).await.unwrap();
        for _ in 0..3 {
            slot.invalidate(&stale).await;
            slot.get(|| async {
                logins.fetch_add(1, Ordering::SeqCst);
                Ok(answer())
            })
            .await
            .unwrap();
        }
        assert_eq!(logins.load(Ordering::SeqCst), 2);

        // Past refresh_at, the next caller logs in again.
        tokio::time::advance(Duration::from_secs(3301)).await;
        slot.get(|| async {
            logins.fetch_add(1, Ordering::SeqCst);
            Ok(answer())
        })
        .await
        .unwrap();
        assert_eq!(logins.load(Ordering::SeqCst), 3);
    }
}
