//! `DELETE /api/posts/{id}/`: by the post's author, or by a host token with the admin role;
//! the post goes with its media, files, posters and uploads, through the one deletion service
//! `livekeep admin delete-post` uses. A live still recording is ended by it.

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::{
    helpers::{error_code, fixture, spawn_app, TestApp},
    host_identity::{bearer, claims, hs256, jwt_app, SECRET},
    poster::{jpeg, put_poster},
};
use livekeep_server::config::AuthMode;

async fn delete(app: &TestApp, token: Option<&str>, post_id: i64) -> Response {
    app.request(Method::DELETE, &format!("/api/posts/{post_id}/"), token)
        .send()
        .await
        .expect("DELETE")
}

async fn status_of(app: &TestApp, path: &str) -> StatusCode {
    app.request(Method::GET, path, None)
        .send()
        .await
        .expect("GET")
        .status()
}

#[tokio::test]
async fn the_author_deletes_a_post_with_its_media_file_and_poster() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "to delete").await;
    let put = put_poster(
        &app,
        Some(&user.token),
        live.id,
        "image/jpeg",
        jpeg("testsrc"),
    )
    .await;
    assert_eq!(put.status(), StatusCode::NO_CONTENT);
    let bytes = fixture();
    app.upload_all(&user, &live, &bytes).await;
    let stopped = app
        .stop(&user.token, live.id, TestApp::video_data(&live, &bytes))
        .await;
    assert_eq!(stopped.status(), StatusCode::OK);
    let post: Value = stopped.json().await.expect("JSON");
    let media = &post["media_files"][0];
    let file = media["file_url"].as_str().expect("file_url").to_owned();
    let poster = media["poster_url"].as_str().expect("poster_url").to_owned();
    app.layouts_assembled(0).await;
    assert_eq!(
        app.stored_files("files").await.len(),
        2,
        "a file and a poster"
    );

    let response = delete(&app, Some(&user.token), live.id).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for path in [format!("/api/posts/{}/", live.id), file, poster] {
        assert_eq!(
            status_of(&app, &path).await,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    assert!(app.stored_files("files").await.is_empty());
    assert!(app.stored_files("uploads").await.is_empty());
    let again = delete(&app, Some(&user.token), live.id).await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn only_the_author_may_delete_without_the_admin_role() {
    let app = spawn_app().await;
    let author = app.user().await;
    let other = app.user().await;
    let post = app.recorded_post(&author, "mine").await;
    let id = post["id"].as_i64().expect("id");

    let response = delete(&app, None, id).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = delete(&app, Some(&other.token), id).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(response).await, "forbidden");
    let response = delete(&app, Some(&other.token), id + 1000).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(response).await, "not_found");
    assert_eq!(
        status_of(&app, &format!("/api/posts/{id}/")).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_host_token_with_the_admin_role_deletes_anyones_post() {
    let app = jwt_app(Some(AuthMode::Both)).await;
    let author = app.user().await;
    let post = app.recorded_post(&author, "moderated").await;
    app.layouts_assembled(0).await;
    let id = post["id"].as_i64().expect("id");

    let member = hs256(SECRET, &claims("500", "member"));
    let response = delete(&app, Some(&member), id).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let mut admin = claims("501", "moderator");
    admin["role"] = json!("admin");
    let response = delete(&app, Some(&hs256(SECRET, &admin)), id).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        status_of(&app, &format!("/api/posts/{id}/")).await,
        StatusCode::NOT_FOUND
    );
    assert!(app.stored_files("files").await.is_empty());
}

#[tokio::test]
async fn a_host_user_deletes_its_own_post() {
    let app = jwt_app(None).await;
    let host = bearer(hs256(SECRET, &claims("600", "Ada")));
    let post = app.recorded_post(&host, "my own").await;
    let id = post["id"].as_i64().expect("id");
    let response = delete(&app, Some(&host.token), id).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn deleting_a_live_in_progress_ends_it_its_upload_and_its_viewers_streams() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "still live").await;
    let bytes = fixture();
    let half = bytes.len() / 2;
    let response = app
        .patch(&user.token, &live.upload_url, 0, &bytes[..half])
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let mut viewer = app.events(live.id, "viewer_id=viewer-0001").await;
    viewer.expect("viewers").await;

    let response = delete(&app, Some(&user.token), live.id).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    // The viewer's stream closes (no `ended`: there is no Post to show any more).
    loop {
        match viewer.next().await {
            None => break,
            Some((name, data)) => assert_ne!(name, "ended", "{data}"),
        }
    }
    // The recorder's next PATCH and its stop find nothing; no bytes stay behind.
    let response = app
        .patch(&user.token, &live.upload_url, half as u64, &bytes[half..])
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = app
        .stop(&user.token, live.id, TestApp::video_data(&live, &bytes))
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(app.stored_files("uploads").await.is_empty());
    assert!(app.stored_files("files").await.is_empty());
    let response = app
        .request(
            Method::GET,
            &format!("/api/posts/live/{}/events?viewer_id=viewer-0001", live.id),
            None,
        )
        .send()
        .await
        .expect("events");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let metrics = app
        .request(Method::GET, "/metrics", None)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("livekeep_active_lives 0"), "{metrics}");
}

/// A deletion reads the post's media before it deletes them. On SQLite, a transaction that
/// reads first and writes second used to fail at once ("database is locked", a 500) when
/// another connection committed in between: here a writer commits without pause while the
/// author deletes live after live.
#[tokio::test]
async fn deletions_succeed_while_other_writers_commit() {
    let app = spawn_app().await;
    let user = app.user().await;
    let mut lives = Vec::new();
    for n in 0..40 {
        lives.push(app.start_live(&user, &format!("busy {n}")).await);
    }
    let db = app.database().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn({
        let stop = stop.clone();
        let user_id = user.id;
        async move {
            let mut commits = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                sqlx::query("UPDATE users SET username = username WHERE id = $1")
                    .bind(user_id)
                    .execute(&db)
                    .await
                    .expect("the other writer commits");
                commits += 1;
            }
            commits
        }
    });
    for live in &lives {
        let response = delete(&app, Some(&user.token), live.id).await;
        let status = response.status();
        assert_eq!(
            status,
            StatusCode::NO_CONTENT,
            "deleting live {}: {}",
            live.id,
            response.text().await.unwrap_or_default()
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(writer.await.expect("writer") > 0, "the other writer ran");
}
