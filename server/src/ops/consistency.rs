//! The start-up consistency check: storage and database are made to agree before serving.
//!
//! A crash can leave files no row names (a finalization that committed its file but not its
//! row, a staged file, an upload file whose row ended) and rows whose file is gone (a disk
//! restored from an older backup). Orphan files the server generated are deleted; rows
//! without a file are reported, and a poster without a file is forgotten so no Media
//! advertises a poster that cannot be served. Stale uploads and silent lives go through the
//! sweeper's own pass, which finalizes silent lives before it expires their uploads.
//!
//! On a shared database (PostgreSQL) other nodes keep serving while one starts: a file no row
//! names yet may be a finalization or an upload about to commit its row. Rows are read before
//! files are listed, and a file without a row is deleted only once older than a grace period.

use std::{
    collections::HashSet,
    time::{Duration, SystemTime},
};

use anyhow::Context;

use crate::{
    db,
    domain::{now_millis, MediaId, UploadId, UploadState},
    ops::sweeper,
    state::AppState,
    storage::{is_storage_key, layout},
};

/// What the check found; every list is empty on a healthy data directory.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Recording or poster files no row names: deleted.
    pub orphan_files: Vec<String>,
    /// Files a finalization left in staging: deleted.
    pub staged_files: Vec<String>,
    /// Upload files without a row, or whose upload ended: deleted (failed uploads are kept).
    pub orphan_upload_files: Vec<String>,
    /// Files in storage the server did not name: reported, left alone.
    pub foreign_files: Vec<String>,
    /// Media whose recording file is missing: reported; `/media/{id}` answers 404.
    pub media_without_file: Vec<MediaId>,
    /// Posters whose file is missing: forgotten (`poster_url` becomes null).
    pub posters_without_file: Vec<String>,
    /// Open uploads past their expiry: expired by the sweeper's pass.
    pub expired_uploads: Vec<String>,
    /// Files without a row but written recently, maybe by another node: left for a later check.
    pub recent_unnamed_files: Vec<String>,
}

/// Whether a file written at `modified` (`None`: gone meanwhile) is too recent to delete.
fn is_recent(modified: Option<SystemTime>, grace: Duration) -> bool {
    let Some(modified) = modified else {
        return false;
    };
    !grace.is_zero()
        && SystemTime::now()
            .duration_since(modified)
            .unwrap_or_default()
            < grace
}

impl Report {
    /// Whether nothing was found.
    pub fn is_clean(&self) -> bool {
        *self == Self::default()
    }

    fn log(&self) {
        let lists: [(&str, &[String]); 7] = [
            ("deleted media files no row names", &self.orphan_files),
            ("deleted files left in staging", &self.staged_files),
            (
                "deleted upload files without an open upload",
                &self.orphan_upload_files,
            ),
            (
                "left alone files the server did not name",
                &self.foreign_files,
            ),
            (
                "forgot posters whose file is missing",
                &self.posters_without_file,
            ),
            ("expired uploads past their expiry", &self.expired_uploads),
            (
                "left for a later check recent files without a row",
                &self.recent_unnamed_files,
            ),
        ];
        for (what, names) in lists {
            if !names.is_empty() {
                tracing::warn!(count = names.len(), names = ?names, "consistency check: {what}");
            }
        }
        if !self.media_without_file.is_empty() {
            tracing::warn!(
                media = ?self.media_without_file,
                "consistency check: media rows whose file is missing (served as 404)"
            );
        }
    }
}

/// Checks storage against the database, repairs what can be, logs the rest at warn.
///
/// Run before serving: no request may be creating files meanwhile.
pub async fn check_and_repair(state: &AppState) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let held = check_media(state, &mut report).await?;
    check_uploads(state, &mut report, held).await?;
    report.expired_uploads = db::uploads::expired(&state.db, now_millis())
        .await?
        .into_iter()
        .map(|upload| upload.id.to_string())
        .collect();
    if !report.expired_uploads.is_empty() {
        sweeper::sweep_once(state)
            .await
            .context("expiring stale uploads")?;
    }
    report.log();
    Ok(report)
}

/// Recordings and posters: files against `media` and `posts` rows. Returns the uploads whose
/// objects layout media hold (object stores), which are theirs to delete.
async fn check_media(state: &AppState, report: &mut Report) -> anyhow::Result<HashSet<UploadId>> {
    // Rows before files: a file and row written in between look like an orphan (kept by the
    // grace period), never like a row without its file.
    let media_rows = db::media::all_keys(&state.db).await?;
    let poster_rows = db::posts::poster_keys(&state.db).await?;
    let (files, staged) = state
        .with_media(|media| Ok((media.list()?, media.list_staged()?)))
        .await?;
    let present: HashSet<&str> = files.iter().map(String::as_str).collect();
    let mut named = HashSet::new();
    let mut layouts = Vec::new();
    for (media_id, storage_key, poster_key) in media_rows {
        if !present.contains(storage_key.as_str()) {
            report.media_without_file.push(media_id);
        }
        if layout::is_layout(&storage_key) {
            named.extend(layout::companions(&storage_key));
            layouts.push(storage_key.clone());
        }
        named.insert(storage_key);
        if let Some(poster) = poster_key {
            if present.contains(poster.as_str()) {
                named.insert(poster);
            } else {
                db::media::clear_poster(&state.db, media_id).await?;
                report.posters_without_file.push(poster);
            }
        }
    }
    for (post_id, poster) in poster_rows {
        if present.contains(poster.as_str()) {
            named.insert(poster);
        } else {
            db::posts::clear_poster(&state.db, post_id).await?;
            report.posters_without_file.push(poster);
        }
    }
    for name in files {
        if named.contains(&name) {
            continue;
        }
        if is_storage_key(&name) {
            report.orphan_files.push(name);
        } else {
            report.foreign_files.push(format!("files/{name}"));
        }
    }
    for name in staged {
        if is_storage_key(&name) {
            report.staged_files.push(name);
        } else {
            report.foreign_files.push(format!("staging/{name}"));
        }
    }
    let candidates: Vec<String> = report
        .orphan_files
        .iter()
        .chain(&report.staged_files)
        .cloned()
        .collect();
    let grace = state.settings.orphan_grace;
    let recent = state
        .with_media(move |media| {
            let mut recent = Vec::new();
            for key in candidates {
                if is_recent(media.modified(&key)?, grace) {
                    recent.push(key);
                } else {
                    // A layout no row names never got its upload: that stays the upload's.
                    media.discard(&key)?;
                }
            }
            Ok(recent)
        })
        .await?;
    report.orphan_files.retain(|key| !recent.contains(key));
    report.staged_files.retain(|key| !recent.contains(key));
    report.recent_unnamed_files.extend(recent);
    let held = state
        .with_media(move |media| {
            let mut held = HashSet::new();
            for key in layouts {
                held.extend(media.layout_upload(&key)?);
            }
            Ok(held)
        })
        .await?;
    Ok(held)
}

/// Upload files against `uploads` rows: an ended upload keeps no file, except a failed one
/// and one a layout media `held` holds.
async fn check_uploads(
    state: &AppState,
    report: &mut Report,
    held: HashSet<UploadId>,
) -> anyhow::Result<()> {
    let states = db::uploads::all_states(&state.db).await?;
    let files = state.with_uploads(|uploads| Ok(uploads.list()?)).await?;
    let mut kept: HashSet<UploadId> = states
        .into_iter()
        .filter(|(_, upload_state)| matches!(upload_state, UploadState::Open | UploadState::Failed))
        .map(|(id, _)| id)
        .collect();
    kept.extend(held);
    let mut doomed = Vec::new();
    for name in files {
        let id = name
            .strip_suffix(".part")
            .and_then(|stem| UploadId::parse(stem).ok());
        match id {
            Some(id) if kept.contains(&id) => {}
            Some(id) => {
                report.orphan_upload_files.push(name);
                doomed.push(id);
            }
            None => report.foreign_files.push(format!("uploads/{name}")),
        }
    }
    let grace = state.settings.orphan_grace;
    let recent = state
        .with_uploads(move |uploads| {
            let mut recent = Vec::new();
            for id in doomed {
                if is_recent(uploads.modified(&id)?, grace) {
                    recent.push(format!("{id}.part"));
                } else {
                    uploads.delete(&id)?;
                }
            }
            Ok(recent)
        })
        .await?;
    report
        .orphan_upload_files
        .retain(|name| !recent.contains(name));
    report.recent_unnamed_files.extend(recent);
    Ok(())
}
