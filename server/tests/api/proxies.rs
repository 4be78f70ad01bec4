//! Behind the host's proxy: with `--trusted-proxies`, the client address of the login limit
//! (per IP) and of the request log comes from `X-Forwarded-For` or `Forwarded`, but only when
//! the TCP peer is a trusted proxy; from anyone else, those headers are ignored.

use std::process::Stdio;

use reqwest::{Method, Response, StatusCode};
use serde_json::json;

use crate::{
    helpers::{spawn_app_with, TestApp},
    process::ServerProcess,
};

/// A failed login for a fresh name (the per-name limit stays out of the way), with `header`.
async fn failed_login(app: &TestApp, attempt: usize, header: (&str, &str)) -> Response {
    app.request(Method::POST, "/api/auth/login", None)
        .header(header.0, header.1)
        .json(&json!({"username": format!("guess{attempt}"), "password": "wrong-password"}))
        .send()
        .await
        .expect("login")
}

/// The client addresses the login limit has counted failures for.
async fn counted_addresses(app: &TestApp) -> Vec<String> {
    let mut subjects: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT subject FROM login_failures WHERE scope = 'ip' ORDER BY subject",
    )
    .fetch_all(&app.database().await)
    .await
    .expect("login failures");
    subjects.sort();
    subjects
}

fn trusting(
    networks: &'static [&'static str],
) -> impl FnOnce(&mut livekeep_server::config::Config) {
    move |config| {
        config.trusted_proxies = networks
            .iter()
            .map(|net| net.parse().expect("a CIDR"))
            .collect();
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_one_client_is_locked_out_and_the_others_are_not() {
    let app = spawn_app_with(trusting(&["127.0.0.0/8"])).await;
    let user = app.user().await;
    for attempt in 0..50 {
        let response = failed_login(
            &app,
            attempt,
            ("x-forwarded-for", "203.0.113.1, 198.51.100.7"),
        )
        .await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    let locked = failed_login(&app, 50, ("x-forwarded-for", "198.51.100.7")).await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);

    // Another client behind the same proxy still signs in.
    let other = app
        .request(Method::POST, "/api/auth/login", None)
        .header("x-forwarded-for", "198.51.100.8")
        .json(&json!({"username": user.username, "password": "password123"}))
        .send()
        .await
        .expect("login");
    assert_eq!(other.status(), StatusCode::OK);
    // The forged first entry was never counted: the proxy appended the real client after it.
    assert_eq!(counted_addresses(&app).await, ["198.51.100.7"]);
}

#[tokio::test]
async fn an_untrusted_peer_cannot_dodge_the_limit_by_forging_x_forwarded_for() {
    for proxies in [&[][..], &["10.0.0.0/8"][..]] {
        let app = spawn_app_with(|config| {
            config.trusted_proxies = proxies.iter().map(|net| net.parse().unwrap()).collect();
        })
        .await;
        for attempt in 0..50 {
            let forged = format!("198.51.100.{attempt}");
            let response = failed_login(&app, attempt, ("x-forwarded-for", &forged)).await;
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "attempt {attempt}"
            );
        }
        let response = failed_login(&app, 50, ("forwarded", "for=198.51.100.200")).await;
        assert_eq!(
            response.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "{proxies:?}"
        );
        assert_eq!(counted_addresses(&app).await, ["127.0.0.1"]);
    }
}

#[tokio::test]
async fn forwarded_and_ipv6_clients_are_read_from_a_trusted_proxy() {
    let app = spawn_app_with(trusting(&["127.0.0.1/32", "2001:db8:ffff::/48"])).await;
    let cases = [
        ("forwarded", r#"for="[2001:db8::1]:4711";proto=https"#),
        ("forwarded", "for=192.0.2.43, for=\"[2001:db8:ffff::9]\""),
        ("x-forwarded-for", "2001:db8::3, 2001:db8:ffff::1"),
        ("x-forwarded-for", "[2001:db8::4]:443"),
    ];
    for (attempt, header) in cases.into_iter().enumerate() {
        let response = failed_login(&app, attempt, header).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        counted_addresses(&app).await,
        ["192.0.2.43", "2001:db8::1", "2001:db8::3", "2001:db8::4"]
    );
}

#[tokio::test]
async fn an_ipv6_proxy_is_trusted_by_its_address() {
    let app = spawn_app_with(|config| {
        config.listen = "[::1]:0".parse().expect("an address");
        config.trusted_proxies = vec!["::1/128".parse().expect("a CIDR")];
    })
    .await;
    let response = failed_login(&app, 0, ("x-forwarded-for", "198.51.100.7")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(counted_addresses(&app).await, ["198.51.100.7"]);
}

#[tokio::test]
async fn the_request_log_names_the_forwarded_client() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let log = data.path().join("server.log");
    let mut command = ServerProcess::command(data.path());
    command
        .args(["--trusted-proxies", "127.0.0.1,::1"])
        .args(crate::helpers::database_args(data.path()))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::from(
            std::fs::File::create(&log).expect("a log file"),
        ));
    let mut server = ServerProcess::spawn(command, String::new).await;
    let response = reqwest::Client::new()
        .get(format!("{}/healthz", server.address))
        .header("x-forwarded-for", "198.51.100.77")
        .send()
        .await
        .expect("healthz");
    assert_eq!(response.status(), StatusCode::OK);
    // Request lines are written in batches, within a tenth of a second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let line = loop {
        let text = std::fs::read_to_string(&log).expect("the log");
        if let Some(line) = text.lines().find(|line| line.contains("/healthz")) {
            break line.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no request line in {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    server.kill();
    assert!(line.contains("client=198.51.100.77"), "{line}");
}
