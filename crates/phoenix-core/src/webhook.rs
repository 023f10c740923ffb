//! Webhooks (SPEC §7.6, §7.7), the pure part: Standard Webhooks secrets and signatures, the URL rules
//! and the private-address guard, and the retry schedule. Sending is the server's; this decides what
//! is sent and where it may go.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// The prefix of a webhook secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// The event types a webhook may subscribe to.
pub const EVENT_TYPES: [&str; 5] = [
    "window.closed",
    "reward.granted",
    "achievement.completed",
    "coupon.redeemed",
    "grant.voided",
];

/// The default retry schedule: the delays before the 2nd, 3rd, ... attempt (SPEC §7.6).
pub const DEFAULT_RETRY_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(3600),
    Duration::from_secs(6 * 3600),
    Duration::from_secs(24 * 3600),
];

/// A new secret from 32 random bytes: `whsec_` + base64.
pub fn new_secret(random: [u8; 32]) -> String {
    format!("{SECRET_PREFIX}{}", B64.encode(random))
}

/// The key bytes of a `whsec_` secret (what signatures are keyed with).
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    B64.decode(secret.strip_prefix(SECRET_PREFIX)?).ok()
}

/// One signature: `v1,` + base64 of HMAC-SHA256 over `id.timestamp.body`, keyed with the secret's
/// bytes (the Standard Webhooks scheme).
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: one signature per key, space-separated (during a rotation's grace
/// period both, the new one first).
pub fn signature_header(keys: &[&[u8]], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|key| sign(key, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether an address is one a webhook may never reach (SPEC §7.7): loopback, unspecified, private,
/// carrier-grade NAT, link-local, unique-local, multicast and broadcast, also when written as an
/// IPv4-mapped or IPv4-compatible IPv6 address.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private_v4(v4);
            }
            let s = v6.segments();
            // ::a.b.c.d (deprecated IPv4-compatible form) reaches the IPv4 address too.
            if s[..6] == [0; 6] && !v6.is_unspecified() && !v6.is_loopback() {
                return is_private_v4(Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                ));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // fe80::/10
                || v6 == Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0) // NAT64 prefix itself
        }
    }
}

fn is_private_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    a == 0 // 0.0.0.0/8
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // 100.64/10
        || (a == 172 && (16..32).contains(&b)) // 172.16/12
        || (a == 192 && b == 168)
        || (a == 169 && b == 254)
        || v4.is_multicast()
        || v4.is_broadcast()
}

/// A webhook URL, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    pub https: bool,
    /// The host as written (a name, or an address without brackets).
    pub host: String,
    pub port: u16,
    /// A literal address, when the host is one.
    pub ip: Option<IpAddr>,
}

/// Checks a webhook URL (SPEC §7.6): `http` or `https`, a host, no credentials, at most 2048
/// characters; with `allow_private` false, a literal private address or `localhost` is refused (names
/// are checked again at every delivery, against what they resolve to). The error says why, for
/// the field `url`.
pub fn check_url(raw: &str, allow_private: bool) -> Result<WebhookUrl, String> {
    if raw.len() > 2048 {
        return Err("must be at most 2048 characters".into());
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    let (https, rest) = if let Some(rest) = raw.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = raw.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err("must be an http:// or https:// URL".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("must not carry credentials (user@host)".into());
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or("has an unclosed '[' in its host")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("has a malformed port")?),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("must name a host".into());
    }
    let port = match port {
        None => {
            if https {
                443
            } else {
                80
            }
        }
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or("has a port that is not 1 to 65535")?,
    };
    let ip: Option<IpAddr> = host.parse().ok();
    if authority.starts_with('[') && !matches!(ip, Some(IpAddr::V6(_))) {
        return Err("has a bracketed host that is not an IPv6 address".into());
    }
    let valid_name = ip.is_some()
        || (host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }));
    if !valid_name {
        return Err("has a host that is not a valid name or address".into());
    }
    // A name whose last label is a number is an IPv4 address to URL parsers (WHATWG: `127.1`,
    // `2130706433`, `0x7f.0.0.1`), which would then connect without resolving it: only the usual
    // dotted form is accepted, and checked as an address above.
    if ip.is_none() {
        let last = host
            .trim_end_matches('.')
            .rsplit('.')
            .next()
            .unwrap_or_default();
        let numeric = !last.is_empty()
            && (last.bytes().all(|b| b.is_ascii_digit())
                || ((last.starts_with("0x") || last.starts_with("0X"))
                    && last[2..].bytes().all(|b| b.is_ascii_hexdigit())));
        if numeric {
            return Err(
                "has a numeric host that is not a dotted IPv4 address (write it as a.b.c.d)".into(),
            );
        }
    }
    if !allow_private {
        let lower = host.to_ascii_lowercase();
        if lower == "localhost" || lower.ends_with(".localhost") {
            return Err("must not point at localhost".into());
        }
        if let Some(ip) = ip
            && is_private(ip)
        {
            return Err(format!(
                "must not point at a private, loopback or link-local address ({ip})"
            ));
        }
    }
    Ok(WebhookUrl {
        https,
        host: host.to_owned(),
        port,
        ip,
    })
}

/// Parses `PHOENIX_WEBHOOK_RETRY_SCHEDULE`: comma-separated delays such as `5s,30s,2m,10m,1h,6h,24h`
/// (units `ms`, `s`, `m`, `h`; 1 to 20 of them, each at most 7 days).
pub fn parse_retry_schedule(raw: &str) -> Result<Vec<Duration>, String> {
    let parts: Vec<&str> = raw.split(',').map(str::trim).collect();
    if parts.is_empty() || parts.len() > 20 || parts.iter().any(|p| p.is_empty()) {
        return Err("expected 1 to 20 comma-separated delays such as 5s,30s,2m,1h".into());
    }
    parts
        .iter()
        .map(|part| {
            let split = part
                .find(|c: char| !c.is_ascii_digit())
                .ok_or_else(|| format!("'{part}' has no unit (ms, s, m or h)"))?;
            let (digits, unit) = part.split_at(split);
            let n: u64 = digits
                .parse()
                .map_err(|_| format!("'{part}' does not start with a number"))?;
            let millis = match unit {
                "ms" => n,
                "s" => n.saturating_mul(1000),
                "m" => n.saturating_mul(60_000),
                "h" => n.saturating_mul(3_600_000),
                _ => return Err(format!("'{part}' has an unknown unit (ms, s, m or h)")),
            };
            if millis > 7 * 24 * 3_600_000 {
                return Err(format!("'{part}' is longer than 7 days"));
            }
            Ok(Duration::from_millis(millis))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_standard_webhooks_scheme() {
        // The example of the Standard Webhooks specification (its README's "Verifying signatures").
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let two = signature_header(&[&key, b"other"], "id", 1, b"{}");
        assert_eq!(two.split(' ').count(), 2);
        assert!(two.starts_with(&sign(&key, "id", 1, b"{}")));
        let secret = new_secret([7; 32]);
        assert!(secret.starts_with("whsec_"));
        assert_eq!(secret_key(&secret).unwrap(), vec![7; 32]);
    }

    #[test]
    fn private_addresses_are_recognised_in_every_spelling() {
        for ip in [
            "127.0.0.1",
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "::10.0.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2001:4860::8888",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_are_checked() {
        let ok = check_url("https://hooks.example.com/phoenix?x=1", false).unwrap();
        assert_eq!(
            (ok.https, ok.host.as_str(), ok.port),
            (true, "hooks.example.com", 443)
        );
        assert_eq!(
            check_url("http://example.com:8080", false).unwrap().port,
            8080
        );
        assert_eq!(
            check_url("http://[2001:db8::1]:9000/x", false).unwrap().ip,
            Some("2001:db8::1".parse().unwrap())
        );
        for bad in [
            "ftp://example.com",
            "https://",
            "https://user:pw@example.com",
            "http://localhost:8080",
            "http://127.1/x",
            "http://2130706433/x",
            "http://0x7f.0.0.1/x",
            "http://a.0x10/x",
            "http://127.0.0.1/",
            "http://[::1]/",
            "http://10.0.0.5",
            "http://169.254.169.254/latest",
            "http://example.com:0",
            "http://example.com:99999",
            "http://exa mple.com",
            "http://[2001:db8::1/",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad}");
        }
        assert!(check_url("http://127.0.0.1:9000/hook", true).is_ok());
    }

    #[test]
    fn retry_schedules_parse() {
        assert_eq!(
            parse_retry_schedule("5s, 30s,2m,1h").unwrap(),
            vec![
                Duration::from_secs(5),
                Duration::from_secs(30),
                Duration::from_secs(120),
                Duration::from_secs(3600)
            ]
        );
        assert_eq!(
            parse_retry_schedule("100ms").unwrap(),
            vec![Duration::from_millis(100)]
        );
        for bad in ["", "5", "5x", "s", "5s,,1m", "200h"] {
            assert!(parse_retry_schedule(bad).is_err(), "{bad}");
        }
    }
}
