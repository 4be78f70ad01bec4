//! Finishing, on a later page, the lives a closed tab left in the local journal.

use crate::error::RecorderError;
use crate::hash::ResumableSha256;
use crate::http::{ApiClient, TusUpload};
use crate::journal::{rebuild_queue, Manifest};
use crate::journal_store::JournalStore;
use crate::locks::{lock_name, try_lock};
use crate::mime;
use crate::model::{seconds, VideoData};
use crate::token::{Credentials, JsTokenProvider, Tokens};
use crate::tus::upload_id_from_url;
use crate::upload::{upload, FinishedUpload, UploadOwner};

use super::stop::stop_live;

/// How many failures in a row a resumed upload tolerates before leaving the journal for
/// the next page load (a failing `getToken` fewer, see [`crate::token::StopPatience`]).
const RESUME_MAX_FAILURES: u32 = 5;

/// Finishes every unfinished journal of `api_base`: uploads what the server lacks, stops the
/// live, deletes the journal. Journals another tab is recording are left alone; one that
/// fails is reported through `on_error` and kept for the next attempt, unless the server
/// refused it for good (any 4xx but 401 and the retryable ones), in which case it is deleted.
pub async fn resume_pending(
    api_base: &str,
    credentials: Credentials<JsTokenProvider>,
    on_error: impl Fn(&RecorderError),
) -> Result<Vec<VideoData>, RecorderError> {
    let client = ApiClient::new(api_base, Tokens::new(credentials));
    let mut resumed = Vec::new();
    for (journal, manifest) in JournalStore::pending().await {
        if manifest.api_base.trim_end_matches('/') != client.api_base() {
            continue;
        }
        let Some(_lock) = try_lock(&lock_name(manifest.live_id)).await else {
            continue;
        };
        match resume_one(&client, &journal, &manifest).await {
            Ok(video_data) => {
                if let Err(err) = journal.remove().await {
                    on_error(&err);
                }
                resumed.push(video_data);
            }
            Err(err) => {
                on_error(&err);
                if err.is_final_refusal() {
                    let _ = journal.remove().await;
                }
            }
        }
    }
    Ok(resumed)
}

async fn resume_one(
    client: &ApiClient,
    journal: &JournalStore,
    manifest: &Manifest,
) -> Result<VideoData, RecorderError> {
    let acked_hash = ResumableSha256::restore(&manifest.hash_state)
        .filter(|h| h.length() == manifest.acked)
        .ok_or_else(|| RecorderError::Journal("the journal's hash state is damaged".into()))?;
    let (queue, stale) = rebuild_queue(acked_hash, journal.read_chunks().await?);
    for offset in stale {
        journal.delete_chunk(offset).await?;
    }
    let owner = FinishedUpload::new(queue, RESUME_MAX_FAILURES);
    upload(&TusUpload::new(client, &manifest.upload_url), &owner).await?;
    let video_data = {
        let queue = owner.queue().borrow();
        VideoData {
            upload_id: upload_id_from_url(&manifest.upload_url).to_owned(),
            upload_url: manifest.upload_url.clone(),
            duration: seconds(manifest.duration_ms),
            size: queue.end(),
            sha256: queue.acked_hash().hex_digest(),
            mime_type: mime::container_of(&manifest.mime_type).to_owned(),
            title: manifest.recording_title.clone(),
            live_id: manifest.live_id,
        }
    };
    // The same allowance as the upload, getToken's included.
    stop_live(
        client,
        &video_data,
        |err, failures| owner.keep_retrying(err, failures),
        |_| {},
    )
    .await?;
    Ok(video_data)
}
