//! The client's address: the TCP peer's, or, when the peer is one of `--trusted-proxies`,
//! the one that proxy reports in `X-Forwarded-For` or `Forwarded` (RFC 7239).
//!
//! Each proxy appends the address it received the request from, so the list is read from the
//! right: addresses of trusted proxies are skipped, and the first other one is the client.
//! Everything to its left was written by that client, and is ignored. An entry that is not an
//! address (`unknown`, an obfuscated `_name`) stops the walk at the trusted hop that wrote it.
//! From any other peer, both headers are ignored: anyone can send them.
//!
//! `X-Forwarded-For` wins when both headers are present, as nearly every proxy and load
//! balancer appends to it; `Forwarded` is read only without it (see SECURITY.md).

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use axum::{
    extract::{ConnectInfo, Request},
    http::HeaderMap,
    response::Response,
};
use ipnet::IpNet;

use crate::http::around::Around;

/// The address a request came from, as the login limit and the request log count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The networks of the proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Proxies in `networks`.
    pub fn new(networks: &[IpNet]) -> Self {
        Self(networks.to_vec())
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request received from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let hops = forwarded_for(headers);
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = hop.map(|ip| ip.to_canonical()) else {
                return client;
            };
            client = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        // Every hop was a trusted proxy: the request started at the leftmost one.
        client
    }
}

/// The hops `X-Forwarded-For` lists (or, without it, `Forwarded`'s `for=`), oldest first;
/// `None` for an entry that is not an address.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    };
    let xff = values("x-forwarded-for");
    if !xff.is_empty() {
        return xff
            .iter()
            .flat_map(|value| value.split(','))
            .map(|entry| parse_node(entry.trim()))
            .collect();
    }
    values("forwarded")
        .iter()
        .flat_map(|value| value.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| parse_node(value.trim().trim_matches('"')))
            })
        })
        .collect()
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:4711`.
fn parse_node(node: &str) -> Option<IpAddr> {
    node.parse::<IpAddr>()
        .ok()
        .or_else(|| node.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
        .or_else(|| {
            node.strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<IpAddr>()
                .ok()
        })
}

/// The layer (`AroundLayer(Arc::new(TrustedProxies::new(..)))`): records the request's
/// [`ClientAddr`] (served without `ConnectInfo`, as a test's `oneshot`, there is none).
impl Around for Arc<TrustedProxies> {
    type Noted = ();

    fn before(&self, request: &mut Request) {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        if let Some(peer) = peer {
            let client = self.client(peer, request.headers());
            request.extensions_mut().insert(ClientAddr(client));
        }
    }

    fn after(&self, (): (), _: &mut Response) {}
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies(list.iter().map(|net| net.parse().unwrap()).collect())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let forged = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=203.0.113.9"),
        ]);
        assert_eq!(
            trusted.client(ip("198.51.100.7"), &forged),
            ip("198.51.100.7")
        );
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.1"), &forged),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted = proxies(&["10.0.0.0/8", "fd00::/8"]);
        let peer = ip("10.0.0.2");
        // The client forged the first entry; the two proxies appended the rest.
        let chain = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.7, 10.0.0.9")]);
        assert_eq!(trusted.client(peer, &chain), ip("198.51.100.7"));
        // Several header lines are one list.
        let split = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "198.51.100.7:5555,fd00::3"),
        ]);
        assert_eq!(trusted.client(peer, &split), ip("198.51.100.7"));
        // Only proxies: the leftmost.
        let proxies_only = headers(&[("x-forwarded-for", "10.1.1.1, 10.0.0.9")]);
        assert_eq!(trusted.client(peer, &proxies_only), ip("10.1.1.1"));
        // No header: the proxy itself.
        assert_eq!(trusted.client(peer, &HeaderMap::new()), peer);
    }

    #[test]
    fn forwarded_is_read_with_quotes_brackets_and_ports() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.2");
        let v6 = headers(&[(
            "forwarded",
            r#"for=192.0.2.60;proto=http, For="[2001:db8:cafe::17]:4711";by=10.0.0.2"#,
        )]);
        assert_eq!(trusted.client(peer, &v6), ip("2001:db8:cafe::17"));
        let v4 = headers(&[("forwarded", r#"for="192.0.2.43:47011", for=10.0.0.7"#)]);
        assert_eq!(trusted.client(peer, &v4), ip("192.0.2.43"));
        // X-Forwarded-For wins when both are sent.
        let both = headers(&[
            ("forwarded", "for=192.0.2.43"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(trusted.client(peer, &both), ip("198.51.100.7"));
    }

    #[test]
    fn an_entry_that_is_not_an_address_stops_at_the_proxy_that_wrote_it() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.2");
        let unknown = headers(&[("forwarded", "for=192.0.2.1, for=unknown, for=10.0.0.5")]);
        assert_eq!(trusted.client(peer, &unknown), ip("10.0.0.5"));
        let garbage = headers(&[("x-forwarded-for", "garbage")]);
        assert_eq!(trusted.client(peer, &garbage), peer);
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_networks() {
        let trusted = proxies(&["127.0.0.1/32"]);
        let chain = headers(&[("x-forwarded-for", "::ffff:198.51.100.7")]);
        assert_eq!(
            trusted.client(ip("::ffff:127.0.0.1"), &chain),
            ip("198.51.100.7")
        );
    }
}
