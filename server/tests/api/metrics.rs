use reqwest::{Method, StatusCode};

use crate::helpers::{fixture, spawn_app, TestApp};

/// Scrapes `/metrics` and returns the value of the series named exactly `series`.
async fn scrape(app: &TestApp, series: &str) -> f64 {
    let response = app
        .request(Method::GET, "/metrics", None)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn counters_move_with_uploads_lives_finalizations_and_requests() {
    let app = spawn_app().await;
    assert_eq!(scrape(&app, "livekeep_bytes_ingested_total").await, 0.0);
    let user = app.user().await;
    let live = app.start_live(&user, "metrics").await;
    assert_eq!(scrape(&app, "livekeep_active_lives").await, 1.0);

    let bytes = fixture();
    app.upload_all(&user, &live, &bytes).await;
    assert_eq!(
        scrape(&app, "livekeep_bytes_ingested_total").await,
        bytes.len() as f64
    );
    assert_eq!(scrape(&app, "livekeep_patch_ack_seconds_count").await, 1.0);

    let stopped = app
        .stop(&user.token, live.id, TestApp::video_data(&live, &bytes))
        .await;
    assert_eq!(stopped.status(), StatusCode::OK);
    assert_eq!(scrape(&app, "livekeep_active_lives").await, 0.0);
    assert_eq!(scrape(&app, "livekeep_finalize_seconds_count").await, 1.0);

    let post = format!("/api/posts/{}/", live.id);
    app.get_json(&post).await;
    app.get_json(&post).await;
    let by_route = concat!(
        "livekeep_http_requests_total{method=\"GET\",",
        "route=\"/api/posts/{post_id}\",status=\"200\"}"
    );
    assert_eq!(scrape(&app, by_route).await, 2.0);
    let patches = concat!(
        "livekeep_http_requests_total{method=\"PATCH\",",
        "route=\"/api/uploads/{upload_id}\",status=\"204\"}"
    );
    assert_eq!(scrape(&app, patches).await, 1.0);
}
