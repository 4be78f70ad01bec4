//! `livekeep admin …`, run as the real binary on a data directory the server has used.

use std::{
    io::Write,
    path::Path,
    process::{Command, Output, Stdio},
};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{fixture, spawn_app, spawn_app_in, TestApp};

/// Runs `livekeep admin <args>` on `data_dir`, feeding `stdin`.
pub fn admin(data_dir: &Path, args: &[&str], stdin: &str) -> Output {
    run(admin_command(data_dir, args), stdin)
}

/// `livekeep admin <args>` on `data_dir`, with the database and storage its servers used.
fn admin_command(data_dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_livekeep"));
    command
        .arg("admin")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .args(crate::helpers::database_args(data_dir))
        .env_remove("DATABASE_URL")
        .env_remove("LIVEKEEP_STORAGE_URL")
        // The storage the test servers of this data directory used (a bucket with
        // LIVEKEEP_TEST_STORAGE=s3; the AWS_* variables are inherited).
        .envs(
            std::fs::read_to_string(data_dir.join("test-storage-url"))
                .map(|url| ("LIVEKEEP_STORAGE_URL", url)),
        )
        .env("RUST_LOG", "warn");
    command
}

/// Runs `command`, feeding `stdin`.
fn run(mut command: Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the livekeep binary runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("writing stdin");
    child.wait_with_output().expect("livekeep admin finishes")
}

/// Asserts success and returns standard output.
pub fn succeeds(output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Asserts failure and returns standard error.
pub fn fails(output: Output) -> String {
    assert!(
        !output.status.success(),
        "expected a failure, got stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A live with the fixture uploaded and, when `stop`, stopped; returns the app and live id.
async fn recorded_live(stop: bool) -> (TestApp, i64) {
    let app = spawn_app().await;
    let user = app.user().await;
    let (live, bytes) = app.uploaded_live(&user, "admin").await;
    if stop {
        let stopped = app
            .stop(&user.token, live.id, TestApp::video_data(&live, &bytes))
            .await;
        assert_eq!(stopped.status(), StatusCode::OK);
    }
    (app, live.id)
}

#[tokio::test]
async fn create_user_reads_the_password_from_stdin_and_the_account_logs_in() {
    let dir = tempfile::tempdir().unwrap();
    let out = succeeds(admin(
        dir.path(),
        &["create-user", "alice", "--password-stdin"],
        "correct horse\n",
    ));
    assert!(out.starts_with("created user alice (id 1)"), "{out}");

    let again = fails(admin(
        dir.path(),
        &["create-user", "alice", "--password-stdin"],
        "another password\n",
    ));
    assert!(again.contains("already taken"), "{again}");
    let short = fails(admin(
        dir.path(),
        &["create-user", "bob", "--password-stdin"],
        "short\n",
    ));
    assert!(short.contains("8"), "{short}");

    let app = spawn_app_in(dir, |_| {}).await;
    let login = app
        .request(Method::POST, "/api/auth/login", None)
        .json(&json!({"username": "alice", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_generated_password_is_printed_and_works() {
    let dir = tempfile::tempdir().unwrap();
    let out = succeeds(admin(dir.path(), &["create-user", "carol"], ""));
    let password = out.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(password.len() >= 8, "{out}");
    let app = spawn_app_in(dir, |_| {}).await;
    let login = app
        .request(Method::POST, "/api/auth/login", None)
        .json(&json!({"username": "carol", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_stuck_live_is_listed_then_finalized_by_hand_as_interrupted() {
    let (app, live_id) = recorded_live(false).await;
    let dir = app.shutdown().await;
    let listed = succeeds(admin(dir.path(), &["list-lives", "--status", "live"], ""));
    assert!(listed.contains(&format!("\n{live_id}\tlive\t")), "{listed}");
    let none = succeeds(admin(dir.path(), &["list-lives", "--status", "ended"], ""));
    assert!(none.ends_with("0 live(s)\n"), "{none}");

    let out = succeeds(admin(
        dir.path(),
        &["finalize-live", &live_id.to_string()],
        "",
    ));
    assert!(out.contains("as interrupted: media"), "{out}");
    let again = fails(admin(
        dir.path(),
        &["finalize-live", &live_id.to_string()],
        "",
    ));
    assert!(again.contains("not live anymore"), "{again}");
    let unknown = fails(admin(dir.path(), &["finalize-live", "999"], ""));
    assert!(unknown.contains("live 999 does not exist"), "{unknown}");

    let app = spawn_app_in(dir, |_| {}).await;
    let post = app.get_json(&format!("/api/posts/{live_id}/")).await;
    assert_eq!(post["live_status"], "interrupted");
    assert_eq!(post["media_files"].as_array().unwrap().len(), 1);
    // On an object store the layout the command stored is assembled by the server's sweeper.
    app.layouts_assembled(0).await;
    assert!(app.stored_files("uploads").await.is_empty());
}

#[tokio::test]
async fn a_refinalization_whose_media_moved_meanwhile_refinalizes_the_file_it_moved_to() {
    // `livekeep admin refinalize` beside a server on SQLite shares no lock with it: the server
    // (its assembly of a layout on an object store, a refinalization) can move the media to
    // another file between the admin's read of the media's row and of its file. On PostgreSQL
    // the admin holds the media's lock from before its read, and the server waits for it.
    let shared_locks = std::env::var("LIVEKEEP_TEST_DATABASE").as_deref() == Ok("postgres");
    let (app, live_id) = recorded_live(true).await;
    app.layouts_assembled(0).await;
    let post = app.get_json(&format!("/api/posts/{live_id}/")).await;
    let id = post["media_files"][0]["id"].as_i64().unwrap();
    let barrier = tempfile::tempdir().unwrap();
    let mut command = admin_command(app.data_dir.path(), &["refinalize", &id.to_string()]);
    command.env(
        "LIVEKEEP_FAULT_HOLD",
        format!("refinalize_read:{}", barrier.path().display()),
    );
    let held = tokio::task::spawn_blocking(move || run(command, ""));
    let reached = barrier.path().join("refinalize_read.reached");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !reached.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the admin never read the media"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    let state = app.state.clone();
    let mut moving = tokio::spawn(async move {
        let media = livekeep_server::domain::MediaId::new(id);
        livekeep_server::recording::refinalize::refinalize(&state, media).await
    });
    // Without shared locks the server moves the media while the admin is held.
    let moved_first = if shared_locks {
        None
    } else {
        Some((&mut moving).await.unwrap().unwrap())
    };
    std::fs::write(barrier.path().join("refinalize_read.release"), b"").unwrap();
    let out = succeeds(held.await.unwrap());
    assert!(
        out.starts_with(&format!("refinalized media {id}:")),
        "{out}"
    );
    let moved = match moved_first {
        Some(moved) => moved,
        None => moving.await.unwrap().unwrap(),
    };

    let key: String = sqlx::query_scalar("SELECT storage_key FROM media WHERE id = $1")
        .bind(id)
        .fetch_one(&app.database().await)
        .await
        .unwrap();
    if shared_locks {
        assert_eq!(key, moved.storage_key, "the server's refinalization waited");
    } else {
        assert_ne!(
            key, moved.storage_key,
            "the admin refinalized the moved file"
        );
    }
    assert_eq!(
        app.stored_files("files").await,
        [key],
        "one file: the one the media names, none left behind"
    );
    let served = app.get_bytes(&format!("/media/{id}")).await;
    assert_eq!(&served[..4], &[0x1A, 0x45, 0xDF, 0xA3]);
}

#[tokio::test]
async fn refinalize_replaces_the_stored_file_and_the_media_follows() {
    let (app, live_id) = recorded_live(true).await;
    let post = app.get_json(&format!("/api/posts/{live_id}/")).await;
    let media: Value = post["media_files"][0].clone();
    let before = app.stored_files("files").await;
    assert_eq!(before.len(), 1);
    let dir = app.shutdown().await;

    let id = media["id"].as_i64().unwrap().to_string();
    let out = succeeds(admin(dir.path(), &["refinalize", &id], ""));
    assert!(
        out.starts_with(&format!("refinalized media {id}:")),
        "{out}"
    );
    let unknown = fails(admin(dir.path(), &["refinalize", "999"], ""));
    assert!(unknown.contains("media 999 does not exist"), "{unknown}");

    let app = spawn_app_in(dir, |_| {}).await;
    let after = app.stored_files("files").await;
    assert_eq!(after.len(), 1, "the old file is gone, the new one alone");
    assert_ne!(after, before);
    let post = app.get_json(&format!("/api/posts/{live_id}/")).await;
    let refinalized = &post["media_files"][0];
    assert!(
        (refinalized["duration"].as_f64().unwrap() - media["duration"].as_f64().unwrap()).abs()
            < 0.1
    );
    let served = app
        .request(Method::GET, &format!("/media/{id}"), None)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    let body = served.bytes().await.unwrap();
    assert_eq!(body.len() as u64, refinalized["size"].as_u64().unwrap());
    assert_eq!(&body[..4], &[0x1A, 0x45, 0xDF, 0xA3]);
}

#[tokio::test]
async fn delete_post_removes_its_rows_and_every_file_it_owned() {
    let (app, live_id) = recorded_live(true).await;
    let post = app.get_json(&format!("/api/posts/{live_id}/")).await;
    let media_id = post["media_files"][0]["id"].as_i64().unwrap();
    let dir = app.shutdown().await;

    let out = succeeds(admin(
        dir.path(),
        &["delete-post", &live_id.to_string()],
        "",
    ));
    assert!(
        out.contains(&format!("deleted post {live_id}: 1 stored file(s)")),
        "{out}"
    );
    let again = fails(admin(
        dir.path(),
        &["delete-post", &live_id.to_string()],
        "",
    ));
    assert!(again.contains("does not exist"), "{again}");

    let app = spawn_app_in(dir, |_| {}).await;
    assert!(app.stored_files("files").await.is_empty());
    assert!(app.stored_files("uploads").await.is_empty());
    for path in [
        format!("/api/posts/{live_id}/"),
        format!("/media/{media_id}"),
    ] {
        let response = app.request(Method::GET, &path, None).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let feed = app.get_json("/api/posts/").await;
    assert!(feed["results"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_post_deleted_by_the_admin_command_stops_being_served_by_the_running_server() {
    let (app, live_id) = recorded_live(true).await;
    let post = app.get_json(&format!("/api/posts/{live_id}/")).await;
    let media = format!("/media/{}", post["media_files"][0]["id"].as_i64().unwrap());
    let range = |app: &TestApp| {
        app.request(Method::GET, &media, None)
            .header("range", "bytes=0-99")
            .send()
    };
    // Served once: the server now holds the media open (and cached).
    assert_eq!(
        range(&app).await.unwrap().status(),
        StatusCode::PARTIAL_CONTENT
    );

    succeeds(admin(
        app.data_dir.path(),
        &["delete-post", &live_id.to_string()],
        "",
    ));
    // Another process deleted it: this server learns it from its files, within a second or so.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let status = range(&app).await.unwrap().status();
        if status == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still answered {status} after the deletion"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_live_whose_bytes_cannot_be_finalized_fails_with_a_clear_message() {
    let app = spawn_app().await;
    let user = app.user().await;
    let live = app.start_live(&user, "broken").await;
    let mut bytes = fixture()[..8].to_vec();
    bytes.extend(std::iter::repeat_n(0xFFu8, 4096));
    app.upload_all(&user, &live, &bytes).await;
    let dir = app.shutdown().await;

    let err = fails(admin(
        dir.path(),
        &["finalize-live", &live.id.to_string()],
        "",
    ));
    assert!(err.contains("could not be finalized"), "{err}");
    let listed = succeeds(admin(
        dir.path(),
        &["list-lives", "--status", "interrupted"],
        "",
    ));
    assert!(
        listed.contains(&format!("\n{}\tinterrupted\t", live.id)),
        "{listed}"
    );
}
