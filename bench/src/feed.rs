//! `feed`: `GET /api/posts/` latency with 1 000 then 10 000 posts, first page and cursor walk.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use reqwest::StatusCode;
use sqlx::{sqlite::SqliteConnectOptions, Connection, SqliteConnection};
use tokio::time::Instant;

use crate::{
    server::{Api, Scratch, Server},
    stats::{self, cell, percentile, ratio},
    Common,
};

/// Options of `feed`.
#[derive(Debug, clap::Args)]
pub struct FeedArgs {
    /// Post counts to measure at, ascending (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pub posts: Vec<u64>,
    /// Sequential requests for the first page, per run.
    #[arg(long, default_value_t = 300)]
    pub requests: usize,
    /// Posts per page (`limit`).
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Runs at each count; figures are the median with min and max.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// Latencies at one post count, one entry per run.
#[derive(Default)]
struct AtCount {
    posts: u64,
    first_p50: Vec<f64>,
    first_p99: Vec<f64>,
    walk_p50: Vec<f64>,
    walk_p99: Vec<f64>,
    walk_max: Vec<f64>,
    pages: usize,
}

/// Runs the feed benchmark and prints its markdown section.
pub async fn run(common: &Common, args: FeedArgs) -> Result<()> {
    let scratch = Scratch::new(&common.work_dir, "feed")?;
    let data_dir = scratch.path().join("data");
    let server = Server::start(&common.server_bin, &data_dir, &[]).await?;
    let api = Api::new(&server.base, Duration::from_secs(30))?;
    api.register("feed").await?;
    let options = SqliteConnectOptions::new()
        .filename(data_dir.join("livekeep.db"))
        .busy_timeout(Duration::from_secs(10));
    let mut db = SqliteConnection::connect_with(&options).await?;
    let author: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'feed'")
        .fetch_one(&mut db)
        .await?;

    let mut seeded = 0;
    let mut results = Vec::new();
    for &count in &args.posts {
        seed(&mut db, author, seeded, count).await?;
        seeded = count.max(seeded);
        let mut at = AtCount {
            posts: count,
            ..AtCount::default()
        };
        for run in 0..args.runs {
            measure(&api, &args, &mut at).await?;
            eprintln!(
                "feed {count} posts run {}: first page p99 {:.2} ms, cursor walk p99 {:.2} ms",
                run + 1,
                at.first_p99[run],
                at.walk_p99[run]
            );
        }
        results.push(at);
    }
    db.close().await?;
    server.stop().await;
    print_report(&args, &results);
    Ok(())
}

/// Adds posts `from..to`: ended lives with one media each, as the feed mostly shows, written
/// with the server's schema (`server/migrations/`) straight into its SQLite file, in one
/// transaction, because 10 000 lives through the API would take minutes of fsyncs.
async fn seed(db: &mut SqliteConnection, author: i64, from: u64, to: u64) -> Result<()> {
    let mut tx = db.begin().await?;
    let base_ms: i64 = 1_700_000_000_000;
    for i in from..to {
        let at = base_ms + i as i64 * 60_000;
        let post: i64 = sqlx::query_scalar(
            "INSERT INTO posts (author_id, content, is_live, live_status, started_at, ended_at,
                viewer_count, peak_viewers, chat_message_count, created_at)
             VALUES (?, ?, 1, 'ended', ?, ?, 3, 2, 5, ?) RETURNING id",
        )
        .bind(author)
        .bind(format!("Live number {i}"))
        .bind(at)
        .bind(at + 30 * 60_000)
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        let media: i64 = sqlx::query_scalar(
            "INSERT INTO media (user_id, title, description, file_type, storage_key, mime_type,
                duration, size, original_sha256, is_live_recording, live_post_id, created_at)
             VALUES (?, ?, ?, 'video', ?, 'video/webm;codecs=vp8,opus', 1800.0, 562500000, ?, 1, ?, ?)
             RETURNING id",
        )
        .bind(author)
        .bind(format!("Vidéo du live - Live number {i}"))
        .bind(format!("Vidéo enregistrée du live 'Live number {i}'"))
        .bind(format!("bench{i:08}.webm"))
        .bind(format!("{i:064x}"))
        .bind(post)
        .bind(at + 30 * 60_000)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO media_files (post_id, media_id, position) VALUES (?, ?, 0)")
            .bind(post)
            .bind(media)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await.context("seeding posts")?;
    Ok(())
}

/// One feed request; returns its latency in ms and the next cursor.
async fn page(api: &Api, limit: u32, cursor: Option<&str>) -> Result<(f64, Option<String>)> {
    let mut request = api
        .http
        .get(format!("{}/api/posts/", api.base))
        .query(&[("limit", limit.to_string())]);
    if let Some(cursor) = cursor {
        request = request.query(&[("cursor", cursor)]);
    }
    let sent = Instant::now();
    let response = request.send().await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await?;
    let ms = sent.elapsed().as_secs_f64() * 1e3;
    if status != StatusCode::OK {
        bail!("feed page: {status} {body}");
    }
    Ok((ms, body["next_cursor"].as_str().map(str::to_owned)))
}

/// One run: repeated first pages, then a walk over every page by cursor.
async fn measure(api: &Api, args: &FeedArgs, at: &mut AtCount) -> Result<()> {
    for _ in 0..20 {
        page(api, args.limit, None).await?;
    }
    let mut first = Vec::with_capacity(args.requests);
    for _ in 0..args.requests {
        first.push(page(api, args.limit, None).await?.0);
    }
    stats::sort(&mut first);
    let mut walk = Vec::new();
    let mut cursor = None;
    loop {
        let (ms, next) = page(api, args.limit, cursor.as_deref()).await?;
        walk.push(ms);
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    at.pages = walk.len();
    stats::sort(&mut walk);
    let p = |v: &[f64], q| percentile(v, q).unwrap_or(f64::NAN);
    at.first_p50.push(p(&first, 50.0));
    at.first_p99.push(p(&first, 99.0));
    at.walk_p50.push(p(&walk, 50.0));
    at.walk_p99.push(p(&walk, 99.0));
    at.walk_max.push(p(&walk, 100.0));
    Ok(())
}

fn print_report(args: &FeedArgs, results: &[AtCount]) {
    println!("## Feed: `GET /api/posts/`\n");
    println!(
        "Posts are ended lives with one media each (the usual feed item), written into the \
         server's SQLite file with its schema. Per run: {} sequential requests for the first \
         page (`limit={}`), then a walk over every page following `next_cursor` (the deep \
         pages). Latency is measured by the client on loopback, JSON parsed. Median of {} runs \
         with min–max. The baseline of constant-ness is the same figure at the smallest count.\n",
        args.requests, args.limit, args.runs
    );
    println!("| posts | first page p50 (ms) | first page p99 (ms) | cursor walk p50 (ms) | cursor walk p99 (ms) | walk max (ms) | pages walked |");
    println!("|---|---|---|---|---|---|---|");
    for at in results {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            at.posts,
            cell(&at.first_p50, 2),
            cell(&at.first_p99, 2),
            cell(&at.walk_p50, 2),
            cell(&at.walk_p99, 2),
            cell(&at.walk_max, 2),
            at.pages
        );
    }
    if let (Some(small), Some(large)) = (results.first(), results.last()) {
        if results.len() > 1 {
            let first_p99 = stats::Spread::of(&large.first_p99).map_or(f64::NAN, |s| s.median);
            let walk_p99 = stats::Spread::of(&large.walk_p99).map_or(f64::NAN, |s| s.median);
            println!(
                "\nRatio {} posts / {} posts (p99): first page {}, cursor walk {}. Goal p99 < 20 ms \
                 at {} posts: first page {}, deep pages {}.",
                large.posts,
                small.posts,
                ratio(&large.first_p99, &small.first_p99),
                ratio(&large.walk_p99, &small.walk_p99),
                large.posts,
                if first_p99 < 20.0 { "**met**" } else { "**not met**" },
                if walk_p99 < 20.0 { "**met**" } else { "**not met**" },
            );
        }
    }
}
