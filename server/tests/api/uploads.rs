use std::time::Duration;

use base64::{engine::general_purpose::STANDARD, Engine};
use reqwest::{Method, StatusCode};
use sha1::{Digest, Sha1};

use crate::helpers::{error_code, fixture, spawn_app, spawn_app_with, TestApp};

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[tokio::test]
async fn options_advertises_the_version_extensions_max_size_and_checksums() {
    let app = spawn_app_with(|c| c.max_upload_size = "1GiB".parse().unwrap()).await;
    for path in [
        "/api/uploads/",
        "/api/uploads/0123456789abcdef0123456789abcdef",
    ] {
        let response = app
            .request(Method::OPTIONS, path, None)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{path}");
        let headers = response.headers();
        assert_eq!(headers["tus-resumable"], "1.0.0");
        assert_eq!(headers["tus-version"], "1.0.0");
        assert_eq!(
            headers["tus-extension"],
            "creation,creation-defer-length,termination,checksum,expiration"
        );
        assert_eq!(headers["tus-max-size"], (1u64 << 30).to_string().as_str());
        assert_eq!(headers["tus-checksum-algorithm"], "sha1,sha256");
    }
}

#[tokio::test]
async fn a_request_of_another_tus_version_gets_412_with_tus_resumable() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "v").await;
    for version in [None, Some("0.2.2")] {
        let mut request = app.request(Method::HEAD, &live.upload_url, Some(&user.token));
        if let Some(version) = version {
            request = request.header("Tus-Resumable", version);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::PRECONDITION_FAILED,
            "{version:?}"
        );
        assert_eq!(response.headers()["tus-version"], "1.0.0");
        assert_eq!(response.headers()["tus-resumable"], "1.0.0");
    }
}

#[tokio::test]
async fn error_answers_on_uploads_carry_tus_resumable_too() {
    let app = spawn_app().await;
    let response = app
        .request(
            Method::HEAD,
            "/api/uploads/0123456789abcdef0123456789abcdef",
            None,
        )
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["tus-resumable"], "1.0.0");
}

#[tokio::test]
async fn patches_in_several_chunks_advance_the_offset_that_head_reports() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "chunks").await;
    let bytes = fixture();
    let mut offset = 0u64;
    for chunk in bytes.chunks(10_000) {
        let response = app
            .patch(&user.token, &live.upload_url, offset, chunk)
            .await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        offset += chunk.len() as u64;
        assert_eq!(
            response.headers()["upload-offset"],
            offset.to_string().as_str()
        );
        assert_eq!(response.headers()["tus-resumable"], "1.0.0");
        assert!(response.headers().contains_key("upload-expires"));
    }
    let head = app.head(&user.token, &live.upload_url).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        head.headers()["upload-offset"],
        bytes.len().to_string().as_str()
    );
    assert_eq!(head.headers()["cache-control"], "no-store");
    assert_eq!(app.upload_bytes(&live.upload_url).await.unwrap(), bytes);
}

#[tokio::test]
async fn a_patch_with_the_wrong_content_type_gets_415() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "ct").await;
    let response = app
        .request(Method::PATCH, &live.upload_url, Some(&user.token))
        .header("Tus-Resumable", "1.0.0")
        .header("Content-Type", "application/octet-stream")
        .header("Upload-Offset", "0")
        .body(fixture())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

/// Asserts the upload holds exactly `bytes`: HEAD reports their length and the storage holds
/// them (nothing, for none).
async fn assert_upload_holds(app: &TestApp, token: &str, upload_url: &str, bytes: &[u8]) {
    let head = app.head(token, upload_url).await;
    assert_eq!(
        head.headers()["upload-offset"],
        bytes.len().to_string().as_str()
    );
    assert_eq!(
        app.upload_bytes(upload_url).await.unwrap_or_default(),
        bytes
    );
}

#[tokio::test]
async fn a_first_chunk_that_is_neither_webm_nor_mp4_gets_415_and_is_not_kept() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "text").await;
    let response = app
        .patch(
            &user.token,
            &live.upload_url,
            0,
            b"<html>not a video</html>",
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_upload_holds(&app, &user.token, &live.upload_url, b"").await;
    let mp4_start = b"\0\0\0\x18ftypiso5\0\0\0\0";
    let response = app.patch(&user.token, &live.upload_url, 0, mp4_start).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_patch_at_the_wrong_offset_gets_409_and_changes_nothing() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "offsets").await;
    let bytes = fixture();
    app.patch(&user.token, &live.upload_url, 0, &bytes[..1000])
        .await;
    for wrong in [0u64, 999, 1001, 5000] {
        let response = app
            .patch(&user.token, &live.upload_url, wrong, &bytes[1000..2000])
            .await;
        assert_eq!(response.status(), StatusCode::CONFLICT, "offset {wrong}");
        assert_eq!(error_code(response).await, "offset_mismatch");
    }
    assert_upload_holds(&app, &user.token, &live.upload_url, &bytes[..1000]).await;
}

#[tokio::test]
async fn a_correct_sha1_or_sha256_checksum_is_accepted() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "sums").await;
    let bytes = fixture();
    let (a, b) = bytes.split_at(20_000);
    let response = app
        .patch_request(&user.token, &live.upload_url, 0)
        .header("Upload-Checksum", format!("sha1 {}", b64(&Sha1::digest(a))))
        .body(a.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app
        .patch_request(&user.token, &live.upload_url, a.len() as u64)
        .header(
            "Upload-Checksum",
            format!("sha256 {}", b64(&sha2::Sha256::digest(b))),
        )
        .body(b.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.upload_bytes(&live.upload_url).await.unwrap(), bytes);
}

#[tokio::test]
async fn a_checksum_mismatch_gets_460_and_the_chunk_is_discarded() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "bad sum").await;
    let bytes = fixture();
    app.patch(&user.token, &live.upload_url, 0, &bytes[..1000])
        .await;
    let response = app
        .patch_request(&user.token, &live.upload_url, 1000)
        .header(
            "Upload-Checksum",
            format!("sha1 {}", b64(&Sha1::digest(b"other"))),
        )
        .body(bytes[1000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 460);
    assert_eq!(response.headers()["tus-resumable"], "1.0.0");
    assert_upload_holds(&app, &user.token, &live.upload_url, &bytes[..1000]).await;
}

#[tokio::test]
async fn an_unsupported_checksum_algorithm_gets_400() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "md5").await;
    let response = app
        .patch_request(&user.token, &live.upload_url, 0)
        .header("Upload-Checksum", "md5 XUFAKrxLKna5cZ2REBfFkg==")
        .body(fixture())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_deferred_length_is_accepted_once_and_then_never_again() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "length").await;
    let bytes = fixture();
    let total = bytes.len().to_string();
    let response = app
        .patch_request(&user.token, &live.upload_url, 0)
        .header("Upload-Length", &total)
        .body(bytes[..1000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let head = app.head(&user.token, &live.upload_url).await;
    assert_eq!(head.headers()["upload-length"], total.as_str());
    assert!(!head.headers().contains_key("upload-defer-length"));
    for again in [total.clone(), (bytes.len() + 5).to_string()] {
        let response = app
            .patch_request(&user.token, &live.upload_url, 1000)
            .header("Upload-Length", &again)
            .body(bytes[1000..].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{again}");
        assert_eq!(error_code(response).await, "length_already_set");
    }
    let response = app
        .patch(&user.token, &live.upload_url, 1000, &bytes[1000..])
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn bytes_beyond_the_declared_length_get_413() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "over").await;
    let bytes = fixture();
    let response = app
        .patch_request(&user.token, &live.upload_url, 0)
        .header("Upload-Length", "1000")
        .body(bytes[..2000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let head = app.head(&user.token, &live.upload_url).await;
    assert_eq!(head.headers()["upload-offset"], "0");
}

#[tokio::test]
async fn an_upload_beyond_the_maximum_size_gets_413() {
    let app = spawn_app_with(|c| c.max_upload_size = "30000".parse().unwrap()).await;
    let user = app.user().await;
    let live = app.start_live(&user, "big").await;
    let bytes = fixture();
    assert!(bytes.len() > 30_000);
    let response = app.patch(&user.token, &live.upload_url, 0, &bytes).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let response = app
        .create_upload_request(&user.token, live.id)
        .header("Upload-Length", "30001")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_patch_body_beyond_the_per_request_limit_gets_413_and_is_not_kept() {
    let app = spawn_app_with(|c| c.max_patch_size = "10000".parse().unwrap()).await;
    let user = app.user().await;
    let live = app.start_live(&user, "limit").await;
    let bytes = fixture();
    let response = app.patch(&user.token, &live.upload_url, 0, &bytes).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let response = app
        .patch(&user.token, &live.upload_url, 0, &bytes[..10_000])
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn creating_an_upload_with_live_id_metadata_returns_201_and_a_location() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "create").await;
    let response = app
        .request(Method::POST, "/api/uploads", Some(&user.token))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Defer-Length", "1")
        .header(
            "Upload-Metadata",
            format!(
                "live_id {},filetype {}",
                b64(live.id.to_string().as_bytes()),
                b64(b"video/webm")
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(response.headers().contains_key("upload-expires"));
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/api/uploads/"));
    let response = app.patch(&user.token, &location, 0, &fixture()).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn creating_an_upload_without_live_id_or_length_gets_400() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "bad create").await;
    let live_meta = format!("live_id {}", b64(live.id.to_string().as_bytes()));
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[("Upload-Defer-Length", "1")], "no metadata"),
        (&[("Upload-Metadata", live_meta.as_str())], "no length"),
        (
            &[
                ("Upload-Defer-Length", "2"),
                ("Upload-Metadata", live_meta.as_str()),
            ],
            "bad defer",
        ),
    ];
    for (headers, case) in cases {
        let mut request = app
            .request(Method::POST, "/api/uploads", Some(&user.token))
            .header("Tus-Resumable", "1.0.0");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{case}");
    }
}

#[tokio::test]
async fn another_users_upload_answers_403_to_create_head_patch_and_delete() {
    let app = spawn_app().await;
    let owner = app.user().await;
    let live = app.start_live(&owner, "mine").await;
    let intruder = app.user().await;
    let create = app
        .create_upload_request(&intruder.token, live.id)
        .header("Upload-Defer-Length", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), StatusCode::FORBIDDEN);
    let head = app.head(&intruder.token, &live.upload_url).await;
    assert_eq!(head.status(), StatusCode::FORBIDDEN);
    let patch = app
        .patch(&intruder.token, &live.upload_url, 0, &fixture())
        .await;
    assert_eq!(patch.status(), StatusCode::FORBIDDEN);
    let delete = app
        .request(Method::DELETE, &live.upload_url, Some(&intruder.token))
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.upload_bytes(&live.upload_url).await.unwrap_or_default(),
        b""
    );
}

#[tokio::test]
async fn a_terminated_upload_is_deleted_and_then_unknown() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "delete").await;
    app.upload_all(&user, &live, &fixture()).await;
    let response = app
        .request(Method::DELETE, &live.upload_url, Some(&user.token))
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.upload_bytes(&live.upload_url).await, None);
    let head = app.head(&user.token, &live.upload_url).await;
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_unknown_or_malformed_upload_id_is_404() {
    let app = spawn_app().await;
    let user = app.user().await;
    for path in [
        "/api/uploads/0123456789abcdef0123456789abcdef",
        "/api/uploads/..%2F..%2Fetc",
    ] {
        let head = app.head(&user.token, path).await;
        assert_eq!(head.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn an_expired_upload_answers_410_and_its_bytes_are_cleaned_up() {
    let app = spawn_app_with(|c| c.upload_expiry = 0).await;
    let user = app.user().await;
    let live = app.start_live(&user, "expired").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let response = app
        .patch(&user.token, &live.upload_url, 0, &fixture())
        .await;
    assert_eq!(response.status(), StatusCode::GONE);
    assert_eq!(error_code(response).await, "upload_expired");
    // The sweeper deletes the file; wait for it without asserting on timing.
    for _ in 0..200 {
        if app.upload_bytes(&live.upload_url).await.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.upload_bytes(&live.upload_url).await,
        None,
        "the sweeper should delete an expired upload"
    );
}

#[tokio::test]
async fn a_second_patch_waits_then_gets_423_while_one_is_streaming_and_bytes_never_interleave() {
    // On the local disk whatever LIVEKEEP_TEST_STORAGE says: the test sees the first PATCH
    // hold the lock by its file growing mid-body, which an object store cannot show (a body
    // is put whole). The lock itself is the same for every storage.
    let app = crate::helpers::spawn_app_with(|config| {
        config.storage_url = Some(format!(
            "file://{}",
            config.data_dir.join("media").display()
        ));
    })
    .await;
    let user = app.user().await;
    let live = app.start_live(&user, "race").await;
    let mut first_part = fixture();
    first_part.resize(1_200_000, 0x42); // Over one write batch, so it reaches the disk.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(receiver, |mut rx| async {
        rx.recv().await.map(|item| (item, rx))
    }));
    let slow = tokio::spawn(
        app.patch_request(&user.token, &live.upload_url, 0)
            .body(body)
            .send(),
    );
    sender.send(Ok(first_part.clone())).await.unwrap();
    // Wait until the first PATCH has written its first batch: it holds the lock by then.
    let file = app.data_dir.path().join("media/uploads").join(format!(
        "{}.part",
        crate::helpers::upload_id(&live.upload_url)
    ));
    for _ in 0..400 {
        if std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let streamed = std::fs::metadata(&file).unwrap().len();
    assert!(streamed > 0);
    // HEAD meanwhile reports the committed offset and leaves the writer's bytes alone.
    let head = app.head(&user.token, &live.upload_url).await;
    assert_eq!(head.headers()["upload-offset"], "0");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), streamed);
    let second = app
        .patch(&user.token, &live.upload_url, 0, &fixture())
        .await;
    assert_eq!(second.status(), StatusCode::LOCKED);
    sender.send(Ok(vec![0x43; 1000])).await.unwrap();
    drop(sender);
    let first = slow.await.unwrap().unwrap();
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    let mut expected = first_part;
    expected.extend_from_slice(&[0x43; 1000]);
    assert_eq!(std::fs::read(&file).unwrap(), expected);
}

#[tokio::test]
async fn bytes_never_acknowledged_are_cut_off_when_the_server_starts() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "recover").await;
    let bytes = fixture();
    app.patch(&user.token, &live.upload_url, 0, &bytes[..1000])
        .await;
    let data_dir = app.shutdown().await;
    // As if the process died after writing bytes but before committing their offset.
    crate::helpers::StorageView::of(data_dir.path())
        .append_unacknowledged(&live.upload_url, &bytes[1000..1500])
        .await;

    let app = crate::helpers::spawn_app_in(data_dir, |_| {}).await;
    assert_eq!(
        app.upload_bytes(&live.upload_url).await.unwrap(),
        &bytes[..1000]
    );
    let head = app.head(&user.token, &live.upload_url).await;
    assert_eq!(head.headers()["upload-offset"], "1000");
    let response = app
        .patch(&user.token, &live.upload_url, 1000, &bytes[1000..])
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.upload_bytes(&live.upload_url).await.unwrap(), bytes);
}

#[tokio::test]
async fn a_patch_finding_bytes_lost_below_the_offset_gets_409_and_the_upload_resumes_from_what_is_held(
) {
    // The local disk, whatever the test storage: the test cuts the upload's file itself.
    let storage = tempfile::tempdir().unwrap();
    let root = storage.path().to_owned();
    let app = crate::helpers::spawn_app_with(|config| {
        config.storage_url = Some(format!("file://{}", root.display()));
    })
    .await;
    let user = app.user().await;
    let live = app.start_live(&user, "lost bytes").await;
    let bytes = fixture();
    let first = app
        .patch(&user.token, &live.upload_url, 0, &bytes[..20_000])
        .await;
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    // As if the disk lost the last writes in a crash the database survived.
    let id = crate::helpers::upload_id(&live.upload_url);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(root.join("uploads").join(format!("{id}.part")))
        .unwrap();
    file.set_len(5_000).unwrap();

    let refused = app
        .patch(&user.token, &live.upload_url, 20_000, &bytes[20_000..])
        .await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(refused).await, "offset_mismatch");
    let head = app.head(&user.token, &live.upload_url).await;
    assert_eq!(head.headers()["upload-offset"], "5000");
    assert_eq!(
        file.metadata().unwrap().len(),
        5_000,
        "nothing was written or extended"
    );
    let resumed = app
        .patch(&user.token, &live.upload_url, 5_000, &bytes[5_000..])
        .await;
    assert_eq!(resumed.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        std::fs::read(root.join("uploads").join(format!("{id}.part"))).unwrap(),
        bytes
    );
}
