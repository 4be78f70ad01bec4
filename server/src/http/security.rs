//! Security headers on every answer: `nosniff` and `no-referrer` everywhere, a strict
//! Content-Security-Policy on the page, and media served only as an allow-listed type.

use axum::{
    extract::Request,
    http::{header, HeaderMap, HeaderValue},
    response::Response,
};

use crate::http::around::Around;

/// Types a media answer may carry; anything else is served as `application/octet-stream`, so
/// a browser never renders an upload as HTML or script.
const MEDIA_TYPES: [&str; 3] = ["video/webm", "video/mp4", "image/jpeg"];

/// The headers the layer stamps (`AroundLayer(SecurityHeaders::new(..)?)`), built once from
/// the configuration.
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    csp: HeaderValue,
}

impl SecurityHeaders {
    /// Headers for a server whose API may also be called from `cors_origins`.
    pub fn new(cors_origins: &[String]) -> anyhow::Result<Self> {
        let mut connect = String::from("'self'");
        for origin in cors_origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/'))
            .filter(|o| !o.is_empty())
        {
            anyhow::ensure!(
                origin
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b';' && b != b','),
                "invalid CORS origin {origin:?}"
            );
            connect.push(' ');
            connect.push_str(origin);
        }
        // 'wasm-unsafe-eval' lets the page compile the recorder's wasm module and nothing else;
        // blob: media is the recorder's own preview.
        let csp = format!(
            "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
             img-src 'self' data: blob:; media-src 'self' blob:; connect-src {connect}; \
             object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        );
        Ok(Self {
            csp: HeaderValue::from_str(&csp)?,
        })
    }

    /// The policy sent with the page.
    pub fn content_security_policy(&self) -> &HeaderValue {
        &self.csp
    }
}

impl Around for SecurityHeaders {
    /// Whether the request is for a media file.
    type Noted = bool;

    fn before(&self, request: &mut Request) -> bool {
        request.uri().path().starts_with("/media/")
    }

    fn after(&self, is_media: bool, response: &mut Response) {
        let headers = response.headers_mut();
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        if is_media {
            restrict_media_type(headers);
        }
        if essence(headers).is_some_and(|essence| essence.eq_ignore_ascii_case("text/html")) {
            headers.insert(header::CONTENT_SECURITY_POLICY, self.csp.clone());
        }
    }
}

/// The `type/subtype` of the answer's `Content-Type`, as sent (compare it ignoring case).
fn essence(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
}

fn restrict_media_type(headers: &mut HeaderMap) {
    let Some(essence) = essence(headers) else {
        return;
    };
    // Error bodies of the media routes are our own JSON.
    let allowed = std::iter::once("application/json")
        .chain(MEDIA_TYPES)
        .any(|allowed| essence.eq_ignore_ascii_case(allowed));
    if !allowed {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_type(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn media_keeps_an_allowed_type_and_loses_any_other() {
        for (recorded, served) in [
            ("video/webm;codecs=vp8,opus", "video/webm;codecs=vp8,opus"),
            ("Video/MP4", "Video/MP4"),
            ("image/jpeg", "image/jpeg"),
            ("text/html", "application/octet-stream"),
            ("image/svg+xml", "application/octet-stream"),
            ("application/javascript", "application/octet-stream"),
        ] {
            let mut headers = with_type(recorded);
            restrict_media_type(&mut headers);
            assert_eq!(headers[header::CONTENT_TYPE], served, "{recorded}");
        }
    }

    #[test]
    fn the_policy_allows_wasm_and_the_configured_origins_only() {
        let csp = SecurityHeaders::new(&["https://app.example/".to_owned()]).unwrap();
        let csp = csp.content_security_policy().to_str().unwrap();
        assert!(
            csp.contains("script-src 'self' 'wasm-unsafe-eval';"),
            "{csp}"
        );
        assert!(
            csp.contains("connect-src 'self' https://app.example;"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
    }

    #[test]
    fn an_origin_cannot_inject_a_directive() {
        assert!(SecurityHeaders::new(&["https://a.example; script-src *".to_owned()]).is_err());
    }
}
