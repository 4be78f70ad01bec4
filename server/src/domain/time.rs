use chrono::{DateTime, SecondsFormat, Utc};

/// Now, as Unix milliseconds (how the database stores times).
pub fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}

/// Formats Unix milliseconds as RFC 3339 UTC, as the API promises.
pub fn rfc3339(millis: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(millis)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Formats Unix milliseconds as an HTTP date (RFC 7231), as tus `Upload-Expires` and
/// `Last-Modified` want; before 1970 reads as 1970. `httpdate` (hyper's own) rather than a
/// strftime pattern parsed on every PATCH and media range.
pub fn http_date(millis: i64) -> String {
    let since_epoch = std::time::Duration::from_millis(u64::try_from(millis).unwrap_or(0));
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + since_epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_are_formatted_as_rfc3339_utc() {
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn millis_are_formatted_as_an_http_date() {
        assert_eq!(
            http_date(1_700_000_000_123),
            "Tue, 14 Nov 2023 22:13:20 GMT"
        );
        assert_eq!(http_date(-5), "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
