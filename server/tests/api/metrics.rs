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

/// The value of the series, or 0 when the server does not report it (no object store).
async fn scrape_or_zero(app: &TestApp, series: &str) -> f64 {
    let text = app
        .request(Method::GET, "/metrics", None)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.parse().unwrap())
}

#[tokio::test]
async fn a_new_lives_patches_and_its_stop_never_list_its_stored_objects() {
    // On an object store (`LIVEKEEP_TEST_STORAGE=s3`) no PATCH of a new live lists the
    // upload's objects: no node wrote it before the first, so nothing of it is stored and no put
    // can be on its way; the next ones know where this node's own pieces end (on the local disk
    // nothing lists).
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "lists").await;
    let lists = r#"livekeep_object_store_requests_total{operation="list"}"#;
    let before = scrape_or_zero(&app, lists).await;
    let bytes = fixture();
    let piece = bytes.len().div_ceil(6);
    let mut offset = 0;
    for chunk in bytes.chunks(piece) {
        let response = app
            .patch(&user.token, &live.upload_url, offset, chunk)
            .await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        offset += chunk.len() as u64;
    }
    let listed = scrape_or_zero(&app, lists).await - before;
    assert_eq!(listed, 0.0, "listings for 6 PATCHes");
    // Nor does the stop on the node that put the last piece: it knows where they end.
    let stopped = app
        .stop(&user.token, live.id, TestApp::video_data(&live, &bytes))
        .await;
    assert_eq!(stopped.status(), StatusCode::OK);
    let listed = scrape_or_zero(&app, lists).await - before;
    assert_eq!(listed, 0.0, "listings for 6 PATCHes and the stop");
}
