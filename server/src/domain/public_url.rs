use super::ParseError;

/// The app's top-level path segments: a prefix starting with one would hide the app's own
/// routes (`/api/posts` under the prefix `/api` would be `/posts`).
const RESERVED: [&str; 5] = ["api", "media", "healthz", "metrics", "assets"];

/// Where people reach the server (`--public-url`): an http(s) origin and a path prefix the
/// app is mounted under (empty at the root). Without one, links stay server-relative paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublicUrl {
    /// `scheme://host[:port]` and the prefix, no trailing slash; empty when unset.
    base: String,
    /// `/livekeep`, or empty at the root or when unset.
    prefix: String,
}

impl PublicUrl {
    /// Parses `https://host.example/livekeep` (a trailing slash is optional).
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let url = url::Url::parse(raw.trim())
            .map_err(|err| ParseError::new(format!("--public-url {raw:?}: {err}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ParseError::new(format!(
                "--public-url {raw:?} must be an http:// or https:// URL with a host"
            )));
        }
        if url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(ParseError::new(format!(
                "--public-url {raw:?} may hold an origin and a path, nothing else"
            )));
        }
        let prefix = url.path().trim_end_matches('/').to_owned();
        let first = prefix.trim_start_matches('/').split('/').next();
        if first.is_some_and(|segment| RESERVED.contains(&segment)) {
            return Err(ParseError::new(format!(
                "--public-url {raw:?}: the path prefix may not start with /{}, a route of the \
                 app itself",
                first.unwrap_or_default()
            )));
        }
        let origin = url.origin().ascii_serialization();
        Ok(Self {
            base: format!("{origin}{prefix}"),
            prefix,
        })
    }

    /// The path prefix the app is mounted under (`/livekeep`), empty at the root.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The URL clients use for the app's `path` (like `/media/7`): absolute under the public
    /// URL when one is configured, `path` itself otherwise.
    pub fn resolve(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_with_a_prefix_resolves_paths_under_it() {
        let url = PublicUrl::parse("https://Host.example/livekeep/").unwrap();
        assert_eq!(url.prefix(), "/livekeep");
        assert_eq!(
            url.resolve("/media/7"),
            "https://host.example/livekeep/media/7"
        );
        let root = PublicUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(root.prefix(), "");
        assert_eq!(root.resolve("/media/7"), "http://127.0.0.1:8080/media/7");
    }

    #[test]
    fn without_a_public_url_links_stay_paths() {
        assert_eq!(PublicUrl::default().resolve("/media/7"), "/media/7");
        assert_eq!(PublicUrl::default().prefix(), "");
    }

    #[test]
    fn anything_but_an_http_origin_and_a_path_is_refused() {
        for raw in [
            "host.example/livekeep",
            "ftp://host.example/",
            "https://host.example/livekeep?x=1",
            "https://host.example/livekeep#top",
            "https://user:pw@host.example/",
            "https://host.example/api",
            "https://host.example/media/x",
        ] {
            assert!(PublicUrl::parse(raw).is_err(), "{raw}");
        }
    }
}
