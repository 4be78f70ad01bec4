use livekeep_server::domain::{MediaId, PostId};
use reqwest::{Method, StatusCode};

use crate::helpers::{spawn_app, TestApp};

/// A recorded media, settled: on an object store, once its layout is assembled into one
/// object (these tests change its row and files behind the server's back).
async fn stored_media(app: &TestApp) -> (i64, i64) {
    let user = app.user().await;
    let post = app.recorded_post(&user, "media").await;
    app.layouts_assembled(0).await;
    let media = &post["media_files"][0];
    (
        media["id"].as_i64().unwrap(),
        media["size"].as_i64().unwrap(),
    )
}

#[tokio::test]
async fn a_media_is_served_whole_with_its_type_etag_and_ranges_advertised() {
    let app = spawn_app().await;
    let (id, size) = stored_media(&app).await;
    let response = app
        .request(Method::GET, &format!("/media/{id}"), None)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(headers["content-type"], "video/webm;codecs=vp8,opus");
    assert!(headers.contains_key("etag"));
    assert!(headers.contains_key("last-modified"));
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len() as i64, size);
    assert_eq!(&body[..4], &[0x1A, 0x45, 0xDF, 0xA3]);
}

#[tokio::test]
async fn a_range_request_returns_206_with_exactly_those_bytes() {
    let app = spawn_app().await;
    let (id, size) = stored_media(&app).await;
    let whole = app.get_bytes(&format!("/media/{id}/")).await;
    let response = app
        .request(Method::GET, &format!("/media/{id}"), None)
        .header("Range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes 100-199/{size}").as_str()
    );
    assert_eq!(response.bytes().await.unwrap(), whole.slice(100..200));
}

#[tokio::test]
async fn an_unsatisfiable_range_returns_416() {
    let app = spawn_app().await;
    let (id, size) = stored_media(&app).await;
    let response = app
        .request(Method::GET, &format!("/media/{id}"), None)
        .header("Range", format!("bytes={}-{}", size + 10, size + 20))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
}

#[tokio::test]
async fn a_matching_if_none_match_returns_304() {
    let app = spawn_app().await;
    let (id, _) = stored_media(&app).await;
    let first = app
        .request(Method::GET, &format!("/media/{id}"), None)
        .send()
        .await
        .unwrap();
    let etag = first.headers()["etag"].clone();
    let again = app
        .request(Method::GET, &format!("/media/{id}"), None)
        .header("If-None-Match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn if_range_with_the_etag_keeps_the_range_and_anything_else_gets_the_whole_file() {
    let app = spawn_app().await;
    let (id, size) = stored_media(&app).await;
    let path = format!("/media/{id}");
    let etag = app
        .request(Method::GET, &path, None)
        .send()
        .await
        .unwrap()
        .headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let ranged = |validator: String| {
        app.request(Method::GET, &path, None)
            .header("Range", "bytes=0-9")
            .header("If-Range", validator)
            .send()
    };
    let same = ranged(etag).await.unwrap();
    assert_eq!(same.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(same.bytes().await.unwrap().len(), 10);
    for other in [
        "\"someone-else\"".to_owned(),
        "Tue, 14 Nov 2023 22:13:20 GMT".to_owned(),
    ] {
        let whole = ranged(other.clone()).await.unwrap();
        assert_eq!(whole.status(), StatusCode::OK, "{other}");
        assert_eq!(whole.bytes().await.unwrap().len() as i64, size, "{other}");
    }
}

#[tokio::test]
async fn head_on_a_media_gives_its_length_without_a_body() {
    let app = spawn_app().await;
    let (id, size) = stored_media(&app).await;
    let response = app
        .request(Method::HEAD, &format!("/media/{id}"), None)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-length"],
        size.to_string().as_str()
    );
    assert_eq!(response.headers()["accept-ranges"], "bytes");
    assert!(response.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_suffix_range_carries_the_same_headers_as_the_whole_file() {
    let app = spawn_app().await;
    let (id, size) = stored_media(&app).await;
    let whole = app
        .request(Method::GET, &format!("/media/{id}"), None)
        .send()
        .await
        .unwrap();
    let whole_headers = whole.headers().clone();
    let whole = whole.bytes().await.unwrap();
    let response = app
        .request(Method::GET, &format!("/media/{id}"), None)
        .header("Range", "bytes=-100")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    let headers = response.headers().clone();
    assert_eq!(
        headers["content-range"],
        format!("bytes {}-{}/{size}", size - 100, size - 1).as_str()
    );
    assert_eq!(headers["content-length"], "100");
    for name in [
        "content-type",
        "etag",
        "last-modified",
        "accept-ranges",
        "cache-control",
    ] {
        assert_eq!(headers.get(name), whole_headers.get(name), "{name}");
    }
    let size = usize::try_from(size).unwrap();
    assert_eq!(response.bytes().await.unwrap(), whole.slice(size - 100..));
}

/// The storage key the database holds for a media.
async fn storage_key(app: &TestApp, id: i64) -> String {
    sqlx::query_scalar("SELECT storage_key FROM media WHERE id = $1")
        .bind(id)
        .fetch_one(&app.database().await)
        .await
        .unwrap()
}

/// `GET /media/{id}` with a `Range`.
async fn ranged(app: &TestApp, id: i64, range: &str) -> reqwest::Response {
    app.request(Method::GET, &format!("/media/{id}"), None)
        .header("Range", range)
        .send()
        .await
        .unwrap()
}

/// The value of an unlabelled metric on `/metrics`.
async fn metric(app: &TestApp, name: &str) -> u64 {
    let text = app
        .request(Method::GET, "/metrics", None)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

/// Asks media `id` for ranges at and across page boundaries: each answer holds exactly the
/// file's bytes, and on the local disk each of them left with sendfile. A range whose pages
/// are not all in the page cache is copied by design (sendfile would wait for the disk on an
/// async worker), and the kernel may drop clean pages at any time (this machine's page cache
/// was seen emptied under a running test): such a range is asked again, a few times, after the
/// whole file was read back into the cache.
async fn assert_ranges_sent_without_a_copy(app: &TestApp, id: i64) {
    const TRIES: usize = 3;
    let whole = app.get_bytes(&format!("/media/{id}")).await;
    let size = whole.len() as u64;
    assert!(size > 3 * 4096, "the media spans several pages");
    let cases = [
        ("bytes=0-0".to_owned(), 0, 0),
        ("bytes=0-4095".to_owned(), 0, 4095),
        ("bytes=4095-4096".to_owned(), 4095, 4096),
        ("bytes=4096-8191".to_owned(), 4096, 8191),
        ("bytes=1-12288".to_owned(), 1, 12288),
        (format!("bytes={}-", size - 1), size - 1, size - 1),
        ("bytes=-4097".to_owned(), size - 4097, size - 1),
        (format!("bytes=5000-{}", size + 100), 5000, size - 1),
    ];
    // An object store has no file to send from.
    let from_files = !crate::s3::requested();
    for (range, first, last) in cases {
        let len = last - first + 1;
        let mut sent = Vec::new();
        for _ in 0..TRIES {
            assert_eq!(app.get_bytes(&format!("/media/{id}")).await, whole);
            let before = metric(app, "livekeep_media_sendfile_bytes_total").await;
            let response = ranged(app, id, &range).await;
            assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
            assert_eq!(
                response.headers()["content-range"],
                format!("bytes {first}-{last}/{size}").as_str(),
                "{range}"
            );
            let body = response.bytes().await.unwrap();
            assert_eq!(body, whole.slice(first as usize..=last as usize), "{range}");
            sent.push(metric(app, "livekeep_media_sendfile_bytes_total").await - before);
            if !from_files || sent.last() == Some(&len) {
                break;
            }
        }
        let expected = if from_files { len } else { 0 };
        assert_eq!(
            sent.last(),
            Some(&expected),
            "{range}: bytes sent with sendfile, try after try: {sent:?}"
        );
    }
}

#[tokio::test]
async fn ranges_sent_without_a_copy_hold_exactly_the_file_s_bytes_at_every_boundary() {
    let app = spawn_app().await;
    let (id, _) = stored_media(&app).await;
    assert_ranges_sent_without_a_copy(&app, id).await;
}

#[tokio::test]
async fn a_refinalized_media_s_ranges_are_sent_without_a_copy_too() {
    // A refinalized recording is one plain file, not the stop's layout.
    let app = spawn_app().await;
    let (id, _) = stored_media(&app).await;
    let refinalized =
        livekeep_server::recording::refinalize::refinalize(&app.state, MediaId::new(id))
            .await
            .unwrap();
    assert!(!refinalized.storage_key.ends_with(".layout"));
    assert_ranges_sent_without_a_copy(&app, id).await;
}

#[tokio::test]
async fn a_media_already_served_is_served_again_without_reading_its_row() {
    let app = spawn_app().await;
    let (id, _) = stored_media(&app).await;
    let whole = app.get_bytes(&format!("/media/{id}")).await;
    // Behind the server's back, the row now names a file that does not exist: a server that
    // read it for each request would answer 404.
    sqlx::query("UPDATE media SET storage_key = $1 WHERE id = $2")
        .bind("0123456789abcdef0123456789abcdef.webm")
        .bind(id)
        .execute(&app.database().await)
        .await
        .unwrap();
    let response = ranged(&app, id, "bytes=10-19").await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.bytes().await.unwrap(), whole.slice(10..20));
}

#[tokio::test]
async fn a_media_whose_file_was_replaced_elsewhere_is_served_from_its_new_file() {
    // Another node (or `livekeep admin refinalize`) moved the media to a new file and deleted
    // the old one: this node's cache still names the old key.
    let app = spawn_app().await;
    let (id, _) = stored_media(&app).await;
    let path = format!("/media/{id}");
    let old = app.get_bytes(&path).await;
    let old_key = storage_key(&app, id).await;
    let new_key = "fedcba9876543210fedcba9876543210.webm";
    let replacement = old.slice(..old.len() / 2 + 7);
    let storage = app.stored();
    storage.write_media(new_key, &replacement).await;
    sqlx::query("UPDATE media SET storage_key = $1, size = $2 WHERE id = $3")
        .bind(new_key)
        .bind(replacement.len() as i64)
        .bind(id)
        .execute(&app.database().await)
        .await
        .unwrap();
    storage.delete_media(&old_key).await;

    let response = ranged(&app, id, "bytes=100-4195").await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        response.headers()["etag"],
        "\"fedcba9876543210fedcba9876543210\""
    );
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes 100-4195/{}", replacement.len()).as_str()
    );
    assert_eq!(
        response.bytes().await.unwrap(),
        replacement.slice(100..4196)
    );
    assert_eq!(app.get_bytes(&path).await, replacement);
    let cached = app.state.media_cache.cached(MediaId::new(id)).unwrap();
    assert_eq!(cached.storage_key, new_key);
}

#[tokio::test]
async fn a_media_deleted_elsewhere_is_gone_though_it_was_served_before() {
    let app = spawn_app().await;
    let (id, _) = stored_media(&app).await;
    let path = format!("/media/{id}");
    app.get_bytes(&path).await;
    let key = storage_key(&app, id).await;
    sqlx::query("DELETE FROM media WHERE id = $1")
        .bind(id)
        .execute(&app.database().await)
        .await
        .unwrap();
    app.stored().delete_media(&key).await;
    let response = ranged(&app, id, "bytes=0-99").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(app.state.media_cache.cached(MediaId::new(id)).is_none());
}

#[tokio::test]
async fn deleting_a_post_on_this_node_forgets_its_media_at_once() {
    let app = spawn_app().await;
    let user = app.user().await;
    let post = app.recorded_post(&user, "deleted").await;
    app.layouts_assembled(0).await;
    let id = post["media_files"][0]["id"].as_i64().unwrap();
    app.get_bytes(&format!("/media/{id}")).await;
    assert!(app.state.media_cache.cached(MediaId::new(id)).is_some());
    let post_id = PostId::new(post["id"].as_i64().unwrap());
    livekeep_server::ops::deletion::delete_post(&app.state, post_id)
        .await
        .unwrap();
    assert!(app.state.media_cache.cached(MediaId::new(id)).is_none());
    let response = ranged(&app, id, "bytes=0-99").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn refinalizing_on_this_node_serves_the_new_file_at_once() {
    let app = spawn_app().await;
    let (id, _) = stored_media(&app).await;
    let path = format!("/media/{id}");
    let first = app.request(Method::GET, &path, None).send().await.unwrap();
    let old_etag = first.headers()["etag"].clone();
    let media_id = MediaId::new(id);
    assert!(app.state.media_cache.cached(media_id).is_some());
    let refinalized = livekeep_server::recording::refinalize::refinalize(&app.state, media_id)
        .await
        .unwrap();
    assert!(app.state.media_cache.cached(media_id).is_none());
    let response = ranged(&app, id, "bytes=0-3").await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    let etag = response.headers()["etag"].clone();
    assert_ne!(etag, old_etag);
    let stem = refinalized.storage_key.split('.').next().unwrap();
    assert_eq!(etag, format!("\"{stem}\"").as_str());
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        &[0x1A, 0x45, 0xDF, 0xA3]
    );
}
