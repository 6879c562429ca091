//! Leaf parsers shared by the validators. Each takes the raw value and its path, reports what is
//! wrong (with a fix) and returns `None` on failure; callers combine the `Option`s.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use quorum::{IdError, VerifyingKey};
use url::Url;

use crate::errors::{FieldPath, Report};
use crate::raw::Dur;

/// `raw`, or "is required" (unless the value was already rejected by serde).
pub(crate) fn required<'a, T>(
    raw: Option<&'a T>,
    path: &FieldPath,
    report: &mut Report,
    fix: &str,
) -> Option<&'a T> {
    if raw.is_none() {
        report.error(path, "is required", fix);
    }
    raw
}

/// `raw`, or `default` when no layer set it. `None` when serde already rejected the value (it
/// was set, just wrongly, so the default must not silently replace it).
pub(crate) fn or_default<T: Clone>(
    raw: Option<&T>,
    default: T,
    path: &FieldPath,
    report: &Report,
) -> Option<T> {
    match raw {
        Some(v) => Some(v.clone()),
        None if report.has_error_at(path) => None,
        None => Some(default),
    }
}

/// A humantime duration in whole milliseconds; zero is rejected.
pub(crate) fn duration_ms(raw: &str, path: &FieldPath, report: &mut Report) -> Option<u64> {
    let d = match humantime::parse_duration(raw.trim()) {
        Ok(d) => d,
        Err(e) => {
            report.error(
                path,
                format!("{raw:?} is not a duration: {}", duration_problem(raw.trim(), &e)),
                "write a number with a unit, e.g. \"250ms\", \"5s\" or \"1m\" (units: ms, s, m, h, d; \"1h 30m\" adds up)",
            );
            return None;
        }
    };
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        report.error(
            path,
            format!("must be at least 1ms, is {raw:?}"),
            "use a positive duration, e.g. \"5s\"",
        );
        return None;
    }
    Some(ms)
}

/// humantime's error in the user's terms ("expected number at 0" says nothing about `-30s`).
fn duration_problem(text: &str, e: &humantime::DurationError) -> String {
    use humantime::DurationError as E;
    let char_at = |pos: usize| text.get(pos..).and_then(|t| t.chars().next());
    match e {
        _ if text.starts_with('-') => "a duration cannot be negative".to_owned(),
        E::Empty => "it is empty".to_owned(),
        E::UnknownUnit { unit, .. } if unit.is_empty() => {
            "a number needs a unit (\"5\" is ambiguous: write \"5s\")".to_owned()
        }
        E::UnknownUnit { unit, .. } => format!("{unit:?} is not a unit"),
        E::NumberOverflow => "the number is too large, or finer than a nanosecond".to_owned(),
        E::NumberExpected(pos) | E::InvalidCharacter(pos) => match char_at(*pos) {
            Some(' ') => format!("a number was expected at character {}", pos + 1),
            Some(c) if c.is_ascii_digit() => {
                format!("a number was expected at character {}", pos + 1)
            }
            Some(c) => format!(
                "{c:?} (character {}) is neither a digit nor part of a unit",
                pos + 1
            ),
            None => "it ends where a number was expected".to_owned(),
        },
    }
}

/// A URL parser's error in the user's terms.
pub(crate) fn url_problem(e: url::ParseError) -> String {
    use url::ParseError as E;
    match e {
        E::RelativeUrlWithoutBase => "it has no scheme (http:// or https://) and host".to_owned(),
        E::EmptyHost => "it has no host".to_owned(),
        E::InvalidPort => "its port is not a number from 1 to 65535".to_owned(),
        E::InvalidIpv4Address => "its host is not a valid IPv4 address".to_owned(),
        E::InvalidIpv6Address => {
            "its host is not a valid IPv6 address (write it in brackets: [2001:db8::1])".to_owned()
        }
        E::InvalidDomainCharacter | E::IdnaError => {
            "its host name has a character a host name cannot have".to_owned()
        }
        other => other.to_string(),
    }
}

/// A base64 decoder's error in the user's terms ("Invalid symbol 32, offset 4" is a space).
#[must_use]
pub fn base64_problem(e: &base64::DecodeError) -> String {
    use base64::DecodeError as E;
    let what = |b: u8| match b {
        b' ' => "a space".to_owned(),
        b'\t' => "a tab".to_owned(),
        b'\n' | b'\r' => "a line break".to_owned(),
        b'-' | b'_' => format!(
            "{:?} (URL-safe base64; standard base64 has '+' and '/')",
            char::from(b)
        ),
        b if b.is_ascii_graphic() => format!("{:?}", char::from(b)),
        b => format!("byte 0x{b:02x}"),
    };
    match *e {
        E::InvalidByte(at, b) => format!(
            "character {} is {}, which base64 does not use (A-Z, a-z, 0-9, '+', '/', and '=' only at the end)",
            at + 1,
            what(b)
        ),
        E::InvalidLength(n) => format!(
            "{n} base64 characters cannot be whole bytes: it looks cut short or has extra characters"
        ),
        E::InvalidLastSymbol(at, b) => format!(
            "its last character ({}, character {}) cannot end base64 of whole bytes: it looks cut short or edited",
            what(b),
            at + 1
        ),
        E::InvalidPadding => {
            "the '=' padding at the end is wrong: it looks cut short or edited".to_owned()
        }
    }
}

/// [`duration_ms`] of the raw value, or of `default` when unset.
pub(crate) fn duration_or(
    raw: Option<&Dur>,
    default: &str,
    path: &FieldPath,
    report: &mut Report,
) -> Option<u64> {
    let text = or_default(raw.map(|d| &d.0), default.to_owned(), path, report)?;
    duration_ms(&text, path, report)
}

/// Like [`duration_or`], but `"0s"` is allowed (a setting where zero means "don't").
pub(crate) fn duration_or_zero(
    raw: Option<&Dur>,
    default: &str,
    path: &FieldPath,
    report: &mut Report,
) -> Option<u64> {
    let text = or_default(raw.map(|d| &d.0), default.to_owned(), path, report)?;
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d.is_zero() => Some(0),
        _ => duration_ms(&text, path, report),
    }
}

/// `5000` → `5s`, for messages.
pub(crate) fn fmt_ms(ms: u64) -> String {
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

/// An integer in `lo..=hi`.
/// An optional number: the default when unset, and either way within `lo..=hi` (the error
/// names the field and `fix`). The usual shape of a bounded setting.
pub(crate) fn ranged_or_default(
    raw: Option<&u64>,
    default: u64,
    (lo, hi): (u64, u64),
    path: &FieldPath,
    report: &mut Report,
    fix: &str,
) -> Option<u64> {
    or_default(raw, default, path, report).and_then(|n| in_range(n, lo, hi, path, report, fix))
}

pub(crate) fn in_range(
    n: u64,
    lo: u64,
    hi: u64,
    path: &FieldPath,
    report: &mut Report,
    fix: &str,
) -> Option<u64> {
    if (lo..=hi).contains(&n) {
        Some(n)
    } else {
        report.error(path, format!("must be between {lo} and {hi}, is {n}"), fix);
        None
    }
}

/// A non-empty string (after trimming), returned as given.
pub(crate) fn non_empty(
    raw: &str,
    path: &FieldPath,
    report: &mut Report,
    fix: &str,
) -> Option<String> {
    if raw.trim().is_empty() {
        report.error(path, "must not be empty", fix);
        None
    } else {
        Some(raw.to_owned())
    }
}

/// A non-empty path; `example` goes into the fix.
pub(crate) fn file_path(
    raw: &str,
    example: &str,
    path: &FieldPath,
    report: &mut Report,
) -> Option<PathBuf> {
    non_empty(
        raw,
        path,
        report,
        &format!("give a path, e.g. \"{example}\", or remove the setting if it is optional"),
    )
    .map(PathBuf::from)
}

/// An optional non-empty path: `Some(None)` when unset, `None` on error.
pub(crate) fn opt_file_path(
    raw: Option<&String>,
    example: &str,
    path: &FieldPath,
    report: &mut Report,
) -> Option<Option<PathBuf>> {
    match raw {
        None => Some(None),
        Some(s) => file_path(s, example, path, report).map(Some),
    }
}

/// Reports an identifier error from `quorum::ids` with the allowed characters as the fix.
pub(crate) fn id_error(e: &IdError, raw: &str, path: &FieldPath, report: &mut Report) {
    report.error(
        path,
        format!("{raw:?} is not a valid id: {e}"),
        "use 1-64 characters of ASCII letters, digits, '-', '_' and '.'",
    );
}

/// An `http`/`https` URL with a host. `base`: a peer base URL, so no query or fragment.
pub(crate) fn http_url(
    raw: &str,
    base: bool,
    path: &FieldPath,
    report: &mut Report,
) -> Option<Url> {
    let example = if base {
        "https://use1.internal:9443"
    } else {
        "https://app.internal/healthz"
    };
    url_like(raw, base, example, path, report)
}

/// A base URL (`http`/`https`, a host, no credentials, no query or fragment) with an example
/// of its own for the fix.
pub(crate) fn base_url(
    raw: &str,
    example: &str,
    path: &FieldPath,
    report: &mut Report,
) -> Option<Url> {
    url_like(raw, true, example, path, report)
}

fn url_like(
    raw: &str,
    base: bool,
    example: &str,
    path: &FieldPath,
    report: &mut Report,
) -> Option<Url> {
    let example = format!("{example:?}");
    let url = match Url::parse(raw.trim()) {
        Ok(u) => u,
        Err(e) => {
            report.error(
                path,
                format!("{raw:?} is not a URL: {}", url_problem(e)),
                format!("write a full URL, e.g. {example}"),
            );
            return None;
        }
    };
    let problem = if !matches!(url.scheme(), "http" | "https") {
        Some(format!("scheme {:?} is not supported", url.scheme()))
    } else if url.host_str().is_none_or(str::is_empty) {
        Some("has no host".to_owned())
    } else if !url.username().is_empty() || url.password().is_some() {
        Some("must not contain credentials".to_owned())
    } else if base && (url.query().is_some() || url.fragment().is_some()) {
        Some("a base URL must not have a query or fragment".to_owned())
    } else {
        None
    };
    match problem {
        Some(p) => {
            report.error(
                path,
                format!("{raw:?}: {p}"),
                format!("use an http:// or https:// URL, e.g. {example}"),
            );
            None
        }
        None => Some(url),
    }
}

/// An `ip:port` socket address.
pub(crate) fn socket_addr(
    raw: &str,
    path: &FieldPath,
    report: &mut Report,
    example: &str,
) -> Option<SocketAddr> {
    match raw.trim().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            report.error(
                path,
                format!("{raw:?} is not an IP address with a port"),
                format!("write ip:port, e.g. \"{example}\" (IPv6 in brackets: \"[::1]:53\")"),
            );
            None
        }
    }
}

/// A socket address, or a bare IP that gets `default_port`.
pub(crate) fn socket_addr_or_ip(
    raw: &str,
    default_port: u16,
    path: &FieldPath,
    report: &mut Report,
    example: &str,
) -> Option<SocketAddr> {
    if let Ok(ip) = raw.trim().parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, default_port));
    }
    socket_addr(raw, path, report, example)
}

/// `host:port` where host is an IP (IPv6 in brackets) or a DNS name; returned as given.
pub(crate) fn host_port(raw: &str, path: &FieldPath, report: &mut Report) -> Option<String> {
    let raw = raw.trim();
    if raw.parse::<SocketAddr>().is_ok() {
        return Some(raw.to_owned());
    }
    let ok = raw
        .rsplit_once(':')
        .is_some_and(|(host, port)| is_dns_name(host) && port.parse::<u16>().is_ok_and(|p| p != 0));
    if ok {
        Some(raw.to_owned())
    } else {
        report.error(
            path,
            format!("{raw:?} is not host:port"),
            "write host:port with a port from 1 to 65535, e.g. \"db.internal:5432\" or \"[2001:db8::1]:5432\"",
        );
        None
    }
}

/// A plausible DNS name: labels of ASCII letters, digits, '-' and '_', an optional final dot.
pub(crate) fn is_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A DNS name as Route 53 writes it: lower case, with the trailing dot (`app.example.com.`).
pub(crate) fn dns_name(
    raw: &str,
    example: &str,
    path: &FieldPath,
    report: &mut Report,
) -> Option<String> {
    if !is_dns_name(raw) {
        report.error(
            path,
            format!("{raw:?} is not a DNS name"),
            format!("write a name like \"{example}\" (letters, digits, '-' and '_' in dot-separated labels)"),
        );
        return None;
    }
    let lower = raw.to_ascii_lowercase();
    Some(if lower.ends_with('.') {
        lower
    } else {
        format!("{lower}.")
    })
}

/// One DNS label of `[a-z0-9-]`, 1-63 long, not starting or ending with '-'.
pub(crate) fn is_dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A Route 53 hosted zone id; the `/hostedzone/` prefix the API returns is accepted and dropped.
pub(crate) fn hosted_zone_id(raw: &str, path: &FieldPath, report: &mut Report) -> Option<String> {
    let id = raw.strip_prefix("/hostedzone/").unwrap_or(raw);
    let ok = !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if ok {
        Some(id.to_owned())
    } else {
        report.error(
            path,
            format!("{raw:?} is not a Route 53 hosted zone id"),
            "write the zone's id as Route 53 shows it: upper-case letters and digits, e.g. \"Z0123456789ABC\"",
        );
        None
    }
}

/// Looks like an AWS region code: `us-east-1`, `ap-southeast-2`, `us-gov-west-1`.
pub(crate) fn is_region_code(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return false;
    };
    let letters = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
    first.len() == 2
        && letters(first)
        && !middle.is_empty()
        && middle.iter().all(|m| letters(m))
        && !last.is_empty()
        && last.bytes().all(|b| b.is_ascii_digit())
}

/// A TLS server name: a DNS name or an IP address.
pub(crate) fn server_name(raw: &str, path: &FieldPath, report: &mut Report) -> Option<String> {
    if is_dns_name(raw) || raw.parse::<IpAddr>().is_ok() {
        Some(raw.to_owned())
    } else {
        report.error(
            path,
            format!("{raw:?} is not a DNS name or IP address"),
            "write the name in the server's certificate, e.g. \"app.example.com\"",
        );
        None
    }
}

/// Base64 (standard alphabet) of a 32-byte ed25519 public key that is a valid, not weak point.
/// `owner`: whose key it is, for the fix (`agent`, `operator`).
pub(crate) fn public_key(
    raw: &str,
    owner: &str,
    path: &FieldPath,
    report: &mut Report,
) -> Option<VerifyingKey> {
    let fix = format!("paste the {owner}'s public key as printed by `quorumgate keygen` (standard base64 of 32 bytes)");
    let bytes = match base64::engine::general_purpose::STANDARD.decode(raw.trim()) {
        Ok(b) => b,
        Err(e) => {
            report.error(path, format!("is not base64: {}", base64_problem(&e)), &fix);
            return None;
        }
    };
    let Ok(arr) = <[u8; 32]>::try_from(bytes.as_slice()) else {
        report.error(
            path,
            format!(
                "decodes to {} bytes; an ed25519 public key is 32",
                bytes.len()
            ),
            &fix,
        );
        return None;
    };
    match VerifyingKey::from_bytes(&arr) {
        Ok(k) if k.is_weak() => {
            report.error(
                path,
                "is a weak (small-order) ed25519 key that could verify forged signatures",
                &fix,
            );
            None
        }
        Ok(k) => Some(k),
        Err(_) => {
            report.error(
                path,
                "is not a valid ed25519 public key (not a curve point)",
                &fix,
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok<T>(f: impl FnOnce(&FieldPath, &mut Report) -> Option<T>) -> Option<T> {
        let mut r = Report::default();
        f(&FieldPath::root().key("x"), &mut r)
    }

    #[test]
    fn durations() {
        assert_eq!(ok(|p, r| duration_ms("250ms", p, r)), Some(250));
        assert_eq!(ok(|p, r| duration_ms("1m", p, r)), Some(60_000));
        assert_eq!(ok(|p, r| duration_ms("5", p, r)), None);
        assert_eq!(ok(|p, r| duration_ms("0s", p, r)), None);
        assert_eq!(ok(|p, r| duration_ms("500us", p, r)), None);
        assert_eq!(fmt_ms(1500), "1s 500ms");
    }

    #[test]
    fn addresses() {
        assert!(ok(|p, r| host_port("db.internal:5432", p, r)).is_some());
        assert!(ok(|p, r| host_port("[::1]:5432", p, r)).is_some());
        assert!(ok(|p, r| host_port("::1:5432", p, r)).is_none());
        assert!(ok(|p, r| host_port("db.internal", p, r)).is_none());
        assert!(ok(|p, r| host_port("db.internal:0", p, r)).is_none());
        assert_eq!(
            ok(|p, r| socket_addr_or_ip("10.0.0.2", 53, p, r, "")),
            Some("10.0.0.2:53".parse().unwrap())
        );
        assert!(ok(|p, r| socket_addr_or_ip("ns.internal:53", 53, p, r, "")).is_none());
    }

    #[test]
    fn dns_names_zone_ids_and_regions() {
        assert_eq!(
            ok(|p, r| dns_name("App.Example.com", "x", p, r)).as_deref(),
            Some("app.example.com.")
        );
        assert_eq!(
            ok(|p, r| dns_name("example.com.", "x", p, r)).as_deref(),
            Some("example.com.")
        );
        assert!(ok(|p, r| dns_name("a..b", "x", p, r)).is_none());
        assert!(ok(|p, r| dns_name("*.example.com", "x", p, r)).is_none());
        assert!(is_dns_label("app-1") && !is_dns_label("-app") && !is_dns_label("App"));
        assert!(!is_dns_label("") && !is_dns_label(&"a".repeat(64)));
        assert_eq!(
            ok(|p, r| hosted_zone_id("/hostedzone/Z0123", p, r)).as_deref(),
            Some("Z0123")
        );
        assert!(ok(|p, r| hosted_zone_id("z0123", p, r)).is_none());
        assert!(ok(|p, r| hosted_zone_id("/hostedzone/", p, r)).is_none());
        assert!(ok(|p, r| hosted_zone_id(&"Z".repeat(33), p, r)).is_none());
        for good in [
            "us-east-1",
            "ap-southeast-2",
            "us-gov-west-1",
            "eu-central-1",
        ] {
            assert!(is_region_code(good), "{good}");
        }
        for bad in [
            "us-east",
            "useast1",
            "US-EAST-1",
            "us--1",
            "u-east-1",
            "us-east-1a",
            "",
        ] {
            assert!(!is_region_code(bad), "{bad}");
        }
    }

    #[test]
    fn zero_durations_where_allowed() {
        let zero = Dur("0s".to_owned());
        assert_eq!(
            ok(|p, r| duration_or_zero(Some(&zero), "1s", p, r)),
            Some(0)
        );
        assert_eq!(ok(|p, r| duration_or_zero(None, "2m", p, r)), Some(120_000));
        let bad = Dur("5".to_owned());
        assert_eq!(ok(|p, r| duration_or_zero(Some(&bad), "1s", p, r)), None);
    }

    #[test]
    fn urls() {
        assert!(ok(|p, r| http_url("https://a.internal:9443", true, p, r)).is_some());
        assert!(ok(|p, r| http_url("https://a.internal/h?x=1", false, p, r)).is_some());
        assert!(ok(|p, r| http_url("https://a.internal/h?x=1", true, p, r)).is_none());
        assert!(ok(|p, r| http_url("ftp://a.internal", false, p, r)).is_none());
        assert!(ok(|p, r| http_url("https://u:p@a.internal", false, p, r)).is_none());
        assert!(ok(|p, r| http_url("a.internal:9443", false, p, r)).is_none());
    }
}
