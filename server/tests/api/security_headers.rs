//! Security headers and CORS: `nosniff` and `no-referrer` on every answer, a strict CSP on the
//! page, media only as an allow-listed type, and CORS from an allow-list without credentials.

use livekeep_server::{config::Config, startup::Application};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

fn assert_hardened(name: &str, response: &reqwest::Response) {
    let headers = response.headers();
    assert_eq!(
        headers
            .get("x-content-type-options")
            .map(|v| v.to_str().unwrap()),
        Some("nosniff"),
        "{name}: {headers:?}"
    );
    assert_eq!(
        headers.get("referrer-policy").map(|v| v.to_str().unwrap()),
        Some("no-referrer"),
        "{name}: {headers:?}"
    );
}

#[tokio::test]
async fn every_answer_says_nosniff_and_no_referrer() {
    let app = spawn_app().await;
    let user = app.user().await;
    let post = app.recorded_post(&user, "headers").await;
    let media = post["media_files"][0]["file_url"]
        .as_str()
        .unwrap()
        .to_owned();
    for (method, path) in [
        (Method::GET, "/api/posts/".to_owned()),
        (Method::GET, "/api/posts/999999/".to_owned()),
        (Method::GET, "/api/nowhere".to_owned()),
        (Method::DELETE, "/api/posts/".to_owned()),
        (Method::GET, "/healthz".to_owned()),
        (Method::GET, "/api/openapi.json".to_owned()),
        (Method::OPTIONS, "/api/uploads/".to_owned()),
        (Method::GET, media.clone()),
        (Method::GET, "/media/999999".to_owned()),
    ] {
        let response = app
            .request(method.clone(), &path, None)
            .send()
            .await
            .unwrap();
        assert!(response.status().as_u16() < 500, "{method} {path}");
        assert_hardened(&format!("{method} {path}"), &response);
    }
    let response = app.request(Method::GET, &media, None).send().await.unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "video/webm;codecs=vp8,opus"
    );
}

#[tokio::test]
async fn a_recorded_type_outside_the_allow_list_is_served_as_octet_stream() {
    let app = spawn_app().await;
    let user = app.user().await;
    let (live, bytes) = app.uploaded_live(&user, "odd type").await;
    let mut video_data = TestApp::video_data(&live, &bytes);
    // Passes the container prefix check but is not a type we serve as such.
    video_data["mime_type"] = "video/webmhtml".into();
    let post: Value = app
        .stop(&user.token, live.id, video_data)
        .await
        .json()
        .await
        .unwrap();
    let media = post["media_files"][0]["file_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = app.request(Method::GET, &media, None).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    assert_hardened("media", &response);
}

#[tokio::test]
async fn the_page_gets_a_strict_content_security_policy_that_allows_wasm() {
    let www = tempfile::tempdir().unwrap();
    std::fs::write(
        www.path().join("index.html"),
        "<!doctype html><title>x</title>",
    )
    .unwrap();
    let www_dir = www.path().to_owned();
    let app = spawn_app_with(|config| {
        config.www_dir = www_dir;
        config.cors_origins = vec!["https://app.example".to_owned()];
    })
    .await;
    for path in ["/", "/watch/12"] {
        let response = app.request(Method::GET, path, None).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_hardened(path, &response);
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        for directive in [
            "default-src 'self'",
            "script-src 'self' 'wasm-unsafe-eval'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            "media-src 'self' blob:",
            "connect-src 'self' https://app.example",
            "frame-ancestors 'none'",
            "object-src 'none'",
        ] {
            assert!(
                csp.split(';').any(|d| d.trim() == directive),
                "{path}: {directive:?} missing from {csp}"
            );
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains('*'),
            "{csp}"
        );
    }
}

#[tokio::test]
async fn cors_answers_only_listed_origins_and_never_with_credentials() {
    let app = spawn_app_with(|config| {
        config.cors_origins = vec!["https://app.example".to_owned()];
    })
    .await;
    let preflight = |origin: &'static str| {
        app.request(Method::OPTIONS, "/api/posts/live/", None)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type",
            )
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(allowed
        .headers()
        .get("access-control-allow-credentials")
        .is_none());
    assert_hardened("preflight", &allowed);

    let refused = preflight("https://evil.example").await.unwrap();
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());

    let simple = app
        .request(Method::GET, "/api/posts/", None)
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(simple
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

#[tokio::test]
async fn a_wildcard_cors_origin_is_refused_at_start() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = Config::with_data_dir(data_dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.cors_origins = vec!["https://app.example".to_owned(), "*".to_owned()];
    let built = Application::build(config).await;
    assert!(built.is_err(), "'*' was accepted");
}

/// Sends `GET <target>` as written (no dot-segment normalization, unlike an URL library) and
/// returns the status line's code and the `content-type`.
async fn raw_get(app: &TestApp, target: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let status = answer[9..12].parse().unwrap();
    let content_type = answer
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type)
}

#[tokio::test]
async fn api_and_media_paths_never_fall_through_to_the_page_and_the_page_is_html() {
    let www = tempfile::tempdir().unwrap();
    std::fs::write(
        www.path().join("index.html"),
        "<!doctype html><title>x</title>",
    )
    .unwrap();
    let www_dir = www.path().to_owned();
    let app = spawn_app_with(|config| config.www_dir = www_dir).await;
    for target in [
        "/media/../../../../etc/passwd",
        "/media/1/poster/extra",
        "/media/not-a-number/x",
        "/media",
        "/api/../../etc/passwd",
        "/api/nothing/here/at/all",
    ] {
        assert_eq!(
            raw_get(&app, target).await,
            (404, "application/json".to_owned()),
            "{target}"
        );
    }
    for target in ["/", "/watch/12", "/deep/client/route"] {
        let (status, content_type) = raw_get(&app, target).await;
        assert_eq!(status, 200, "{target}");
        assert!(
            content_type.starts_with("text/html"),
            "{target}: {content_type}"
        );
    }
}
