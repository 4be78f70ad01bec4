use reqwest::{Method, StatusCode};

use crate::helpers::{spawn_app, TestApp};

async fn stored_media(app: &TestApp) -> (i64, i64) {
    let user = app.user().await;
    let post = app.recorded_post(&user, "media").await;
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
