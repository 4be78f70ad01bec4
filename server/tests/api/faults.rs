//! Faults a storage system meets: a full disk, a crash in the middle of a stop, slow and
//! broken clients. Each keeps every acknowledged byte and answers with a clear error.

use std::{io::Write, path::PathBuf, process::Command};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{error_code, fixture, sha256_hex, spawn_app_with, TestApp};

/// A small tmpfs mounted for the test's lifetime; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        // SAFETY-free check of the effective user: mounting needs root (CI runs as root).
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
