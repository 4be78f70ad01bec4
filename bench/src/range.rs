//! `range`: 1 MiB Range requests on a finalized recording, livekeep versus nginx on the same file.

use std::{
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use reqwest::{header, StatusCode};
use tokio::process::{Child, Command};

use crate::{
    proc_stat,
    server::{Api, Scratch, Server},
    stats::{cell, ratio, Spread},
    Common,
};

/// Options of `range`.
#[derive(Debug, clap::Args)]
pub struct RangeArgs {
    /// Size of the generated recording, in MiB.
    #[arg(long, default_value_t = 256)]
    pub size_mib: u64,
    /// Bytes per Range request.
    #[arg(long, default_value_t = 1 << 20)]
    pub range_bytes: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    pub connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    /// Runs of each side, alternated; figures are the median with min and max.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// `finalize-bench` from livekeep-webm, which generates a MediaRecorder-shaped WebM.
    #[arg(long, default_value = "target/release/finalize-bench")]
    pub generator: PathBuf,
    /// The nginx binary.
    #[arg(long, default_value = "nginx")]
    pub nginx: PathBuf,
}

/// One wrk run.
struct WrkRun {
    requests: u64,
    requests_per_sec: f64,
    bad_responses: u64,
    p99_ms: f64,
}

/// Runs the Range benchmark and prints its markdown section.
pub async fn run(common: &Common, args: RangeArgs) -> Result<()> {
    let scratch = Scratch::new(&common.work_dir, "range")?;
    let input = scratch.path().join("input.webm");
    let status = Command::new(&args.generator)
        .arg("generate")
        .arg(&input)
        .arg(args.size_mib.to_string())
        .status()
        .await
        .with_context(|| format!("running {}", args.generator.display()))?;
    if !status.success() {
        bail!("generating the recording failed: {status}");
    }

    // The recording goes the way a live's does: tus PATCHes, then stop, which finalizes it.
    let data_dir = scratch.path().join("data");
    let server = Server::start(&common.server_bin, &data_dir, &[]).await?;
    let api = Api::new(&server.base, Duration::from_secs(600))?;
    let token = api.register("range").await?;
    let live = api.start_live(&token, "range").await?;
    let size = upload_file(&api, &token, &live.upload_url, &input).await?;
    let post = api.stop_live(&token, &live, size).await?;
    let media = &post["media_files"][0];
    let file_url = media["file_url"].as_str().context("no media file_url")?;
    let media_size = media["size"].as_u64().context("no media size")?;
    std::fs::remove_file(&input)?;
    let ours_url = format!("{}{file_url}", server.base);
    // A stopped recording is stored as a layout (its new head beside the upload's own bytes),
    // not as one file: nginx serves the same bytes, downloaded once from livekeep. Reading
    // them once also warms the page cache for both.
    let nginx_root = scratch.path().join("nginx-root");
    std::fs::create_dir_all(&nginx_root)?;
    let name = "recording.webm";
    let stored = nginx_root.join(name);
    download(&api, &ours_url, &stored).await?;
    let downloaded = std::fs::metadata(&stored)?.len();
    if downloaded != media_size {
        bail!("downloaded {downloaded} bytes of a {media_size}-byte media");
    }

    let nginx = Nginx::start(&args.nginx, scratch.path(), &nginx_root).await?;
    let nginx_url = format!("{}/{name}", nginx.base);
    for url in [&ours_url, &nginx_url] {
        check_range(&api, url, args.range_bytes).await?;
    }
    eprintln!(
        "range: livekeep pid {} at {}, nginx at {}",
        server.pid().unwrap_or(0),
        server.base,
        nginx.base
    );
    let script = scratch.path().join("ranges.lua");
    std::fs::write(&script, lua_script(media_size, args.range_bytes))?;

    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    // CPU µs per request of each server: what decides its throughput when the client shares
    // the two cores, and steadier than requests/s on a machine others use.
    let (mut ours_cpu, mut theirs_cpu) = (Vec::new(), Vec::new());
    let (ours_pid, nginx_pid) = (server.pid(), nginx.child.id());
    for run in 0..args.runs {
        // Alternate who goes first, so neither always meets a warmer machine.
        let order = if run % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_ours in order {
            let url = if is_ours { &ours_url } else { &nginx_url };
            let pid = if is_ours { ours_pid } else { nginx_pid };
            let cpu_before = pid.and_then(proc_stat::tree_cpu_seconds);
            let result = wrk(&args, &script, url).await?;
            let cpu = cpu_before
                .zip(pid.and_then(proc_stat::tree_cpu_seconds))
                .map(|(before, after)| (after - before) * 1e6 / result.requests.max(1) as f64);
            if let Some(cpu) = cpu {
                if is_ours {
                    ours_cpu.push(cpu);
                } else {
                    theirs_cpu.push(cpu);
                }
            }
            eprintln!(
                "range run {} {}: {:.0} req/s, p99 {:.1} ms, bad answers {}, server CPU {:.0} µs \
                 per request",
                run + 1,
                if is_ours { "livekeep" } else { "nginx" },
                result.requests_per_sec,
                result.p99_ms,
                result.bad_responses,
                cpu.unwrap_or(f64::NAN)
            );
            if is_ours {
                ours.push(result)
            } else {
                theirs.push(result)
            }
        }
    }
    nginx.stop().await;
    let sent = sendfile_bytes(&api, &server.base).await?;
    let asked = ours.iter().map(|r| r.requests).sum::<u64>() * args.range_bytes;
    server.stop().await;

    let rps = |runs: &[WrkRun]| runs.iter().map(|r| r.requests_per_sec).collect::<Vec<_>>();
    let p99 = |runs: &[WrkRun]| runs.iter().map(|r| r.p99_ms).collect::<Vec<_>>();
    let bad = |runs: &[WrkRun]| runs.iter().map(|r| r.bad_responses).sum::<u64>();
    let met = Spread::of(&rps(&ours))
        .zip(Spread::of(&rps(&theirs)))
        .is_some_and(|(a, b)| a.median >= b.median);
    println!("## Range requests on a finalized recording\n");
    println!(
        "A {} MiB MediaRecorder-shaped WebM (generated by `finalize-bench generate`) is uploaded \
         with tus and stopped, so the server finalizes it; then `wrk -t{} -c{} -d{}s` asks for \
         random {} KiB ranges (`Range: bytes=a-b`, a Lua script) of `/media/{{id}}`, and of the \
         same bytes, downloaded once from it into one file, served by nginx {} (started on a \
         loopback port with a temporary config: `sendfile on`, `access_log off`, \
         `worker_processes auto`). Livekeep serves the recording as the stop stored it: its new \
         head and the upload's own bytes (a layout), each range sent with `sendfile` from them. \
         Both are in the page cache. The client runs on the same 2 cores as the server under test. \
         Median of {} alternated runs with min–max.\n",
        args.size_mib,
        args.threads,
        args.connections,
        args.seconds,
        args.range_bytes / 1024,
        nginx_version(&args.nginx).await,
        args.runs
    );
    println!("| figure | livekeep | baseline nginx | ratio | goal ≥ 1.0 |");
    println!("|---|---|---|---|---|");
    println!(
        "| requests/s | {} | {} | {} | {} |",
        cell(&rps(&ours), 0),
        cell(&rps(&theirs), 0),
        ratio(&rps(&ours), &rps(&theirs)),
        if met { "**met**" } else { "**not met**" }
    );
    println!(
        "| latency p99 (ms) | {} | {} | {} | — |",
        cell(&p99(&ours), 1),
        cell(&p99(&theirs), 1),
        ratio(&p99(&ours), &p99(&theirs))
    );
    println!(
        "| server CPU per request (µs, `/proc` user + system) | {} | {} | {} | — |",
        cell(&ours_cpu, 0),
        cell(&theirs_cpu, 0),
        ratio(&ours_cpu, &theirs_cpu)
    );
    println!(
        "| non-2xx answers | {} | {} | — | — |\n",
        bad(&ours),
        bad(&theirs)
    );
    println!(
        "Bytes livekeep sent with `sendfile` (its `livekeep_media_sendfile_bytes_total`): {:.1} \
         of the {:.1} GiB the completed requests asked for (more when wrk cut requests short).\n",
        sent as f64 / f64::from(1 << 30),
        asked as f64 / f64::from(1 << 30)
    );
    Ok(())
}

/// The server's count of media bytes sent with sendfile.
async fn sendfile_bytes(api: &Api, base: &str) -> Result<u64> {
    let text = api
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|l| l.strip_prefix("livekeep_media_sendfile_bytes_total "))
        .and_then(|v| v.trim().parse().ok())
        .context("no livekeep_media_sendfile_bytes_total in /metrics")
}

/// PATCHes `path` to the upload in 8 MiB pieces; returns its size.
async fn upload_file(api: &Api, token: &str, url: &str, path: &Path) -> Result<u64> {
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let mut offset = 0;
    while offset < size {
        let len = (size - offset).min(8 << 20) as usize;
        let mut piece = vec![0; len];
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut piece)?;
        offset = api.patch(token, url, offset, Bytes::from(piece)).await?;
    }
    Ok(size)
}

/// Writes the whole body of `url` to `path`.
async fn download(api: &Api, url: &str, path: &Path) -> Result<()> {
    let mut response = api.http.get(url).send().await?.error_for_status()?;
    let mut file = std::fs::File::create(path)?;
    while let Some(chunk) = response.chunk().await? {
        std::io::Write::write_all(&mut file, &chunk)?;
    }
    Ok(())
}

/// Checks that `url` answers a Range request with 206 and the asked length.
async fn check_range(api: &Api, url: &str, len: u64) -> Result<()> {
    let response = api
        .http
        .get(url)
        .header(header::RANGE, format!("bytes=1000-{}", 1000 + len - 1))
        .send()
        .await?;
    let status = response.status();
    let body = response.bytes().await?;
    if status != StatusCode::PARTIAL_CONTENT || body.len() as u64 != len {
        bail!(
            "{url}: a Range request got {status} with {} bytes",
            body.len()
        );
    }
    Ok(())
}

/// A wrk script asking for a random `len`-byte range of a `size`-byte file on each request.
fn lua_script(size: u64, len: u64) -> String {
    format!(
        r#"-- Random {len}-byte ranges of a {size}-byte file.
local size, len = {size}, {len}
function setup(thread)
  thread:set("seed", math.random(1, 1000000))
end
function init(args)
  math.randomseed(os.time() + seed)
end
function request()
  local first = math.random(0, size - len)
  return wrk.format("GET", nil, {{ ["Range"] = "bytes=" .. first .. "-" .. (first + len - 1) }})
end
"#
    )
}

/// Runs wrk against `url` and parses its summary.
async fn wrk(args: &RangeArgs, script: &Path, url: &str) -> Result<WrkRun> {
    let output = Command::new("wrk")
        .arg(format!("-t{}", args.threads))
        .arg(format!("-c{}", args.connections))
        .arg(format!("-d{}s", args.seconds))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(url)
        .output()
        .await
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    parse_wrk(&text).with_context(|| format!("parsing wrk output:\n{text}"))
}

fn parse_wrk(text: &str) -> Option<WrkRun> {
    let after = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_owned()))
    };
    let requests_per_sec = after("Requests/sec:")?.parse().ok()?;
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())?;
    let bad_responses = after("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let p99_ms = after("99%").map(|v| duration_ms(&v)).unwrap_or(f64::NAN);
    Some(WrkRun {
        requests,
        requests_per_sec,
        bad_responses,
        p99_ms,
    })
}

/// wrk's `12.34ms` / `1.2s` / `800us` as milliseconds.
fn duration_ms(text: &str) -> f64 {
    let (number, unit) = text
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((text, ""), |i| text.split_at(i));
    let value: f64 = number.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => value / 1e3,
        "ms" => value,
        "s" => value * 1e3,
        "m" => value * 60e3,
        _ => f64::NAN,
    }
}

async fn nginx_version(bin: &Path) -> String {
    let output = Command::new(bin).arg("-v").output().await;
    output
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stderr)
                .split('/')
                .nth(1)
                .map(|v| v.split_whitespace().next().unwrap_or("").to_owned())
        })
        .unwrap_or_default()
}

/// nginx serving `root` on a free loopback port, stopped when told.
struct Nginx {
    child: Child,
    base: String,
}

impl Nginx {
    async fn start(bin: &Path, scratch: &Path, root: &Path) -> Result<Self> {
        let prefix = scratch.join("nginx");
        std::fs::create_dir_all(prefix.join("tmp"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let is_root = std::fs::read_to_string("/proc/self/status")
            .map(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
            })
            .unwrap_or(false);
        let p = prefix.display();
        let config = format!(
            "# Temporary config of livekeep-bench range: one static root on loopback.
{user}worker_processes auto;
daemon off;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types {{ video/webm webm; }}
    default_type application/octet-stream;
    client_body_temp_path {p}/tmp; proxy_temp_path {p}/tmp; fastcgi_temp_path {p}/tmp;
    uwsgi_temp_path {p}/tmp; scgi_temp_path {p}/tmp;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
",
            // Workers of a root master default to `nobody`; the scratch files are root's.
            user = if is_root { "user root;\n" } else { "" },
            root = root.display(),
        );
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, config)?;
        let child = Command::new(bin)
            .arg("-p")
            .arg(&prefix)
            .arg("-e")
            .arg(prefix.join("error.log"))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(Self { child, base });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("nginx did not listen on {port}; see {p}/error.log")
    }

    async fn stop(mut self) {
        // SIGKILL of the master would leave its workers behind; SIGTERM takes them down too.
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let _ = self.child.start_kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_durations_are_read_in_milliseconds() {
        assert_eq!(duration_ms("12.50ms"), 12.5);
        assert_eq!(duration_ms("800.00us"), 0.8);
        assert_eq!(duration_ms("1.20s"), 1200.0);
    }

    #[test]
    fn a_wrk_summary_gives_requests_per_second_and_bad_answers() {
        let text = "  Latency Distribution\n     50%    9.00ms\n     99%   31.20ms\n  \
                    30000 requests in 10.00s, 29.30GB read\n  Non-2xx or 3xx responses: 3\n\
                    Requests/sec:   2999.50\nTransfer/sec:      2.93GB\n";
        let run = parse_wrk(text).unwrap();
        assert_eq!(run.requests_per_sec, 2999.5);
        assert_eq!(run.requests, 30000);
        assert_eq!(run.bad_responses, 3);
        assert_eq!(run.p99_ms, 31.2);
    }
}
