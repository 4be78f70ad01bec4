//! Faults a storage system meets: a full disk, a crash in the middle of a stop, slow and
//! broken clients. Each keeps every acknowledged byte and answers with a clear error.

use std::{io::Write, path::PathBuf, process::Command};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{
    crash::{json_of, patch, register_and_start_live, start_server, stop},
    helpers::{error_code, fixture, sha256_hex, spawn_app_with, TestApp},
    process::ServerProcess,
};

/// A small tmpfs mounted for the test's lifetime; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        // Mounting needs root (CI runs as root).
        let uid = Command::new("id").arg("-u").output().expect("id -u");
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "the disk-full test mounts a tmpfs and must run as root"
        );
        let dir = tempfile::tempdir().expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mount -t tmpfs failed (CAP_SYS_ADMIN needed)"
        );
        Self { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// Writes a file until the filesystem refuses more bytes.
    fn fill(&self) -> PathBuf {
        let filler = self.dir.path().join("filler");
        let mut file = std::fs::File::create(&filler).expect("filler");
        let block = vec![0u8; 64 << 10];
        loop {
            match file.write_all(&block) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::StorageFull => break,
                Err(err) => panic!("filling the tmpfs: {err}"),
            }
        }
        // Single pages may remain; fill them byte-wise-ish.
        let small = vec![0u8; 512];
        while file.write_all(&small).is_ok() {}
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[tokio::test]
async fn a_patch_that_does_not_fit_gets_507_and_the_upload_resumes_once_space_is_freed() {
    let tmpfs = Tmpfs::mount("8m");
    let storage = tmpfs.path();
    let app = spawn_app_with(|config| {
        config.storage_url = Some(format!("file://{}", storage.display()));
    })
    .await;
    let user = app.user().await;
    let live = app.start_live(&user, "disk full").await;
    let bytes = fixture();
    let first = app
        .patch(&user.token, &live.upload_url, 0, &bytes[..10_000])
        .await;
    assert_eq!(first.status(), StatusCode::NO_CONTENT);

    let filler = tmpfs.fill();
    let refused = app
        .patch(&user.token, &live.upload_url, 10_000, &bytes[10_000..])
        .await;
    assert_eq!(refused.status(), StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(error_code(refused).await, "insufficient_storage");
    let head = app.head(&user.token, &live.upload_url).await;
    assert_eq!(head.headers()["upload-offset"], "10000");
    assert_eq!(
        std::fs::metadata(storage.join("uploads").join(format!(
            "{}.part",
            live.upload_url.rsplit('/').next().unwrap()
        )))
        .unwrap()
        .len(),
        10_000,
        "the partial bytes were not rolled back"
    );
    // The server keeps serving.
    let feed = app.get_json("/api/posts/").await;
    assert_eq!(feed["results"][0]["live_status"], "live");

    std::fs::remove_file(filler).unwrap();
    let resumed = app
        .patch(&user.token, &live.upload_url, 10_000, &bytes[10_000..])
        .await;
    assert_eq!(resumed.status(), StatusCode::NO_CONTENT);
    let stopped = app
        .stop(&user.token, live.id, TestApp::video_data(&live, &bytes))
        .await;
    assert_eq!(stopped.status(), StatusCode::OK);
    let post: Value = stopped.json().await.unwrap();
    assert_eq!(
        post["media_files"][0]["original_sha256"],
        sha256_hex(&bytes).as_str()
    );
    drop(app);
}

/// Registers, starts a live and uploads the whole fixture on a spawned binary.
async fn recorded_live(client: &reqwest::Client, server: &ServerProcess) -> (String, i64, String) {
    let (token, live_id, upload_url) =
        register_and_start_live(client, server, "crasher", "crash at stop").await;
    let patched = patch(client, server, &token, &upload_url, 0, &fixture())
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::NO_CONTENT);
    (token, live_id, upload_url)
}

async fn send_stop(
    client: &reqwest::Client,
    server: &ServerProcess,
    token: &str,
    live_id: i64,
    upload_url: &str,
) -> reqwest::Result<reqwest::Response> {
    stop(client, server, token, live_id, upload_url, &fixture())
        .send()
        .await
}

/// The Media of a finished post is served whole: as many bytes as it says, WebM from byte 0.
async fn assert_media_complete(client: &reqwest::Client, server: &ServerProcess, post: &Value) {
    let media = &post["media_files"][0];
    let served = client
        .get(format!(
            "{}{}",
            server.address,
            media["file_url"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), StatusCode::OK, "{post}");
    let body = served.bytes().await.unwrap();
    assert_eq!(body.len() as u64, media["size"].as_u64().unwrap(), "{post}");
    assert_eq!(&body[..4], &[0x1A, 0x45, 0xDF, 0xA3], "not a WebM");
    assert_eq!(media["original_sha256"], sha256_hex(&fixture()).as_str());
}

#[tokio::test]
async fn a_crash_at_any_step_of_a_stop_leaves_a_whole_media_or_a_stoppable_live() {
    let client = reqwest::Client::new();
    for point in ["before_rename", "after_rename", "before_commit"] {
        let data_dir = tempfile::tempdir().unwrap();
        let mut server = start_server(data_dir.path(), &[("LIVEKEEP_FAULT_POINT", point)]).await;
        let (token, live_id, upload_url) = recorded_live(&client, &server).await;
        let stop = send_stop(&client, &server, &token, live_id, &upload_url).await;
        assert!(
            stop.is_err(),
            "{point}: the stop answered {stop:?} instead of crashing"
        );
        let exit = server.child.wait().unwrap();
        assert!(!exit.success(), "{point}: the server exited cleanly");

        let server = start_server(data_dir.path(), &[]).await;
        let post = json_of(client.get(format!("{}/api/posts/{live_id}/", server.address))).await;
        let media_dir = data_dir.path().join("media");
        // Stored media: a layout's head and data links count with it, and alone as leftovers.
        let files = |sub: &str| {
            let names: Vec<String> = std::fs::read_dir(media_dir.join(sub))
                .map(|d| {
                    d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            let companion = |name: &String| {
                let (stem, ext) = name.split_once('.').unwrap_or((name, ""));
                matches!(ext, "head" | "data") && names.contains(&format!("{stem}.layout"))
            };
            names.iter().filter(|name| !companion(name)).count()
        };
        // The start-up check removed what the crash left behind.
        assert_eq!(
            files("staging"),
            0,
            "{point}: staged files survived the restart"
        );
        match post["live_status"].as_str() {
            Some("live") => {
                assert_eq!(post["media_files"], json!([]), "{point}");
                assert_eq!(files("files"), 0, "{point}: an orphan file survived");
                let stopped = send_stop(&client, &server, &token, live_id, &upload_url)
                    .await
                    .unwrap();
                assert_eq!(stopped.status(), StatusCode::OK, "{point}");
                let post: Value = stopped.json().await.unwrap();
                assert_media_complete(&client, &server, &post).await;
            }
            Some("ended") => assert_media_complete(&client, &server, &post).await,
            other => panic!("{point}: live_status {other:?}"),
        }
        assert_eq!(files("files"), 1, "{point}");
    }
}
