//! The scale-out baseline: the object store alone doing the PUTs of a load step, through the
//! client library the server uses (object_store, configured from the same `AWS_*` variables),
//! with no Livekeep, HTTP front or database in between.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::{path::Path, ObjectStore, ObjectStoreExt, PutPayload};
use tokio::{
    task::JoinSet,
    time::{interval_at, Instant, MissedTickBehavior},
};

/// A client on the bucket and prefix the baseline writes under.
pub struct StoreAlone {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
}

/// What one baseline step measured.
pub struct StoreStep {
    /// Every successful PUT's latency in ms, sorted.
    pub latencies_ms: Vec<f64>,
    /// PUTs that failed.
    pub errors: u64,
}

impl StoreAlone {
    /// A client on `url` (`s3://bucket/prefix`), configured from the environment.
    pub fn open(url: &str) -> Result<Self> {
        // The server installs the same provider: reqwest is built without a default one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rest = url
            .strip_prefix("s3://")
            .with_context(|| format!("{url}: the baseline needs an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_url(format!("s3://{bucket}"))
            .build()
            .with_context(|| format!("configuring {url}"))?;
        Ok(Self {
            store: Arc::new(store),
            prefix: Path::from(prefix.trim_matches('/')),
        })
    }

    /// `n` writers, each putting one `chunk` per second as a new object for `chunks` seconds,
    /// starting spread over the first second and waiting for each answer before the next, as
    /// the load's recorders wait for each 204. Objects are named as the server names pieces,
    /// and deleted afterwards. With `list_first`, each put follows a listing of the writer's
    /// objects, as a PATCH's reconciliation does; the latency covers both.
    pub async fn step(
        &self,
        tag: &str,
        n: usize,
        chunks: u32,
        chunk: &Bytes,
        list_first: bool,
    ) -> Result<StoreStep> {
        let dir = self.prefix.clone().join(tag);
        let began = Instant::now();
        let mut writers = JoinSet::new();
        for i in 0..n {
            let (store, dir, chunk) = (Arc::clone(&self.store), dir.clone(), chunk.clone());
            let start = began + Duration::from_secs_f64(i as f64 / n as f64);
            writers.spawn(async move {
                let mut ticker = interval_at(start, Duration::from_secs(1));
                ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
                let (mut latencies, mut errors) = (Vec::with_capacity(chunks as usize), 0u64);
                let mut offset = 0u64;
                for _ in 0..chunks {
                    ticker.tick().await;
                    let end = offset + chunk.len() as u64;
                    let location = dir
                        .clone()
                        .join(i.to_string())
                        .join(format!("{offset:020}-{end:020}"));
                    let sent = Instant::now();
                    if list_first {
                        let mine = dir.clone().join(i.to_string());
                        let listed: Result<Vec<_>, _> = store.list(Some(&mine)).try_collect().await;
                        if listed.is_err() {
                            errors += 1;
                            continue;
                        }
                    }
                    match store.put(&location, PutPayload::from(chunk.clone())).await {
                        Ok(_) => {
                            latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                            offset = end;
                        }
                        Err(_) => errors += 1,
                    }
                }
                (latencies, errors)
            });
        }
        let mut step = StoreStep {
            latencies_ms: Vec::new(),
            errors: 0,
        };
        while let Some(writer) = writers.join_next().await {
            let (latencies, errors) = writer?;
            step.latencies_ms.extend(latencies);
            step.errors += errors;
        }
        crate::stats::sort(&mut step.latencies_ms);
        self.clear(&dir).await?;
        Ok(step)
    }

    /// Deletes everything under `dir`.
    async fn clear(&self, dir: &Path) -> Result<()> {
        let locations = self
            .store
            .list(Some(dir))
            .map_ok(|meta| meta.location)
            .boxed();
        let deleted: Vec<_> = self.store.delete_stream(locations).collect().await;
        for result in deleted {
            result.with_context(|| format!("deleting the baseline's objects under {dir}"))?;
        }
        Ok(())
    }
}
