//! Console sessions on the wire (SPEC §3.6): opaque access and refresh tokens (the store keeps their
//! SHA-256 only), the three cookies a login sets, the double-submit CSRF check for cookie-authenticated
//! writes, and argon2id password hashing off the async workers.

use crate::error::ApiError;
use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use base64::Engine;
use jiff::{SignedDuration, Timestamp};
use phoenix_store::model::SessionTokens;
use phoenix_store::seal::{random_bytes, random_hex};
use sha2::{Digest, Sha256};

pub const ACCESS_COOKIE: &str = "phoenix-access-token";
pub const REFRESH_COOKIE: &str = "phoenix-refresh-token";
pub const CSRF_COOKIE: &str = "phoenix-csrf-token";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Console access tokens start with this, so a Bearer token is told apart from keys and JWTs at once.
pub const ACCESS_PREFIX: &str = "phx_at_";
pub const REFRESH_PREFIX: &str = "phx_rt_";

/// A freshly issued token pair in plaintext (sent to the client once) and what the store keeps.
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub stored: SessionTokens,
}

fn new_token(prefix: &str) -> String {
    let raw = random_bytes::<32>();
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    )
}

/// The family a refresh token names, or `""` when it names none (a token from before families were
/// named, or not a refresh token at all).
pub fn family_of(refresh_token: &str) -> &str {
    refresh_token
        .strip_prefix(REFRESH_PREFIX)
        .and_then(|rest| rest.split_once('.'))
        .map(|(family, _)| family)
        .filter(|f| f.len() == 32 && f.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or("")
}

pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new access/refresh pair expiring after the given lifetimes, in `family` (a refresh) or in a new
/// family (a login). The refresh token names its family (`phx_rt_<family>.<random>`), so a spent one is
/// recognised however many refreshes ago it was spent; a family id is 128 random bits and appears
/// nowhere but inside the family's own tokens.
pub fn issue(
    access_ttl: SignedDuration,
    refresh_ttl: SignedDuration,
    family: Option<&str>,
) -> IssuedTokens {
    let now = Timestamp::now();
    let family_id = family.map_or_else(random_hex::<16>, str::to_owned);
    let access_token = new_token(ACCESS_PREFIX);
    let refresh_token = new_token(&format!("{REFRESH_PREFIX}{family_id}."));
    IssuedTokens {
        stored: SessionTokens {
            family_id,
            access_hash: token_hash(&access_token),
            access_expires_at: now.saturating_add(access_ttl).unwrap_or(now),
            refresh_hash: token_hash(&refresh_token),
            refresh_expires_at: now.saturating_add(refresh_ttl).unwrap_or(now),
        },
        access_token,
        refresh_token,
    }
}

/// The value of cookie `name` in the request, if sent.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Whether a method only reads (no CSRF check, allowed for VIEWERs).
pub fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The CSRF token of a session family: a digest of the family id, which only the family's own tokens
/// carry (in HttpOnly cookies). Bound to the session, so a cookie pair injected by another site (or a
/// sibling subdomain) does not pass, and the same in every tab for the session's whole life.
pub fn csrf_for(family_id: &str) -> String {
    hex::encode(Sha256::digest(
        format!("phoenix-csrf\n{family_id}").as_bytes(),
    ))
}

/// 403 unless the request's `X-CSRF-Token` equals its `phoenix-csrf-token` cookie and both are the
/// CSRF token of the session `family_id` that authenticated it.
pub fn check_csrf(headers: &HeaderMap, family_id: &str) -> Result<(), ApiError> {
    let refused = || {
        ApiError::Forbidden(
            "cookie-authenticated writes must send X-CSRF-Token equal to the phoenix-csrf-token cookie"
                .into(),
        )
    };
    let expected = cookie(headers, CSRF_COOKIE).ok_or_else(refused)?;
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .ok_or_else(refused)?;
    if crate::auth::secrets_equal(expected, sent)
        && crate::auth::secrets_equal(sent, &csrf_for(family_id))
    {
        Ok(())
    } else {
        Err(refused())
    }
}

/// Whether cookies may go without `Secure`: the request was addressed to this machine's loopback
/// (`localhost`, `127.x.y.z`, `[::1]`), since local development is plain HTTP, and no proxy in front
/// says the client used HTTPS (`X-Forwarded-Proto: https`).
pub fn on_loopback(headers: &HeaderMap) -> bool {
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    if forwarded_https {
        return false;
    }
    loopback_host(headers)
}

/// Whether the request's `Host` is a loopback name or address (`localhost`, `127.x.y.z`, `[::1]`),
/// with or without a port.
pub fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// One `Set-Cookie` value. `http_only` is false only for the CSRF cookie, which the console reads.
pub fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age: i64,
    http_only: bool,
    secure: bool,
) -> HeaderValue {
    let mut cookie = format!("{name}={value}; Path={path}; Max-Age={max_age}; SameSite=Strict");
    if http_only {
        cookie.push_str("; HttpOnly");
    }
    if secure {
        cookie.push_str("; Secure");
    }
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Password hashes running at once. Each takes 19 MiB and a core for tens of milliseconds, so without a
/// bound a burst of sign-ins (or of guesses) could take the machine's memory and starve scoring.
fn hashing_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores.clamp(1, 8))
    })
}

/// How long a sign-in waits for a hashing slot before it is told to come back.
const HASHING_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

async fn hashing_slot() -> Result<tokio::sync::SemaphorePermit<'static>, ApiError> {
    let busy = || ApiError::Unavailable("too many sign-ins at once; try again shortly".into());
    tokio::time::timeout(HASHING_WAIT, hashing_slots().acquire())
        .await
        .map_err(|_| busy())?
        .map_err(|_| busy())
}

/// Hashes a password with argon2id (default parameters: 19 MiB, 2 passes) on a blocking thread.
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    let _slot = hashing_slot().await?;
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| ApiError::Internal(format!("password hashing failed: {e}")))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("password hashing task failed: {e}")))?
}

/// A hash of a password nobody knows, verified when the user does not exist, so a login for an
/// unknown name costs as much as one with a wrong password (no user enumeration by timing).
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        Argon2::default()
            .hash_password(random_hex::<16>().as_bytes())
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Whether `password` matches `hash` (or, with no hash, spends the same time and answers false).
pub async fn verify_password(password: String, hash: Option<String>) -> Result<bool, ApiError> {
    let _slot = hashing_slot().await?;
    Ok(tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| decoy_hash().to_owned());
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok();
        known && matches
    })
    .await
    .unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; phoenix-access-token=phx_at_x; phoenix-csrf-token=c"),
        );
        assert_eq!(cookie(&headers, ACCESS_COOKIE), Some("phx_at_x"));
        assert_eq!(cookie(&headers, CSRF_COOKIE), Some("c"));
        assert_eq!(cookie(&headers, "phoenix"), None);
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        let host = |h: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_static(h));
            on_loopback(&headers)
        };
        assert!(host("127.0.0.1:8080"));
        assert!(host("localhost"));
        assert!(host("[::1]:8080"));
        assert!(!host("phoenix.example.com"));
        assert!(!host("10.0.0.5:8080"));
        let mut proxied = HeaderMap::new();
        proxied.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        proxied.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(!on_loopback(&proxied));
    }

    #[test]
    fn csrf_needs_header_equal_to_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("phoenix-csrf-token=abc"),
        );
        assert!(check_csrf(&headers, "f").is_err());
        headers.insert(CSRF_HEADER, HeaderValue::from_static("abd"));
        assert!(check_csrf(&headers, "f").is_err());
        // Header equal to cookie, but not the session's own token: an injected pair.
        headers.insert(CSRF_HEADER, HeaderValue::from_static("abc"));
        assert!(check_csrf(&headers, "f").is_err());
        let own = csrf_for("f");
        let cookie = format!("phoenix-csrf-token={own}");
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&cookie).expect("a header value"),
        );
        headers.insert(
            CSRF_HEADER,
            HeaderValue::from_str(&own).expect("a header value"),
        );
        assert!(check_csrf(&headers, "f").is_ok());
        assert!(check_csrf(&headers, "g").is_err());
    }
}
