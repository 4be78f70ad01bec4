//! Every route of the contract gets its bad cases: the documented 4xx with the JSON error
//! shape, never a 5xx, and not one row of the database changed.
//!
//! What is accepted, decided here: usernames are ASCII (`[A-Za-z0-9_.-]`, 1–32); chat bodies
//! take any Unicode text including 4-byte UTF-8 (emoji) but refuse control characters and
//! bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069), which could
//! disguise what other people read. Method overrides (`X-HTTP-Method-Override`, `_method`) are
//! never honoured: the method on the wire is the method routed.

use reqwest::{header::HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{fixture, spawn_app, TestApp, TestLive, TestUser};

/// Who sends the request.
#[derive(Clone, Copy, Debug)]
enum Who {
    Nobody,
    Garbage,
    Owner,
    Other,
}

/// A request body.
#[derive(Clone, Debug)]
enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

/// One bad request and the answer the contract promises.
struct Case {
    name: String,
    method: Method,
    path: String,
    who: Who,
    headers: Vec<(&'static str, String)>,
    body: Body,
    status: u16,
    code: Option<&'static str>,
}

fn case(name: impl Into<String>, method: Method, path: impl Into<String>, who: Who) -> Case {
    Case {
        name: name.into(),
        method,
        path: path.into(),
        who,
        headers: Vec::new(),
        body: Body::None,
        status: 0,
        code: None,
    }
}

impl Case {
    fn json(mut self, body: Value) -> Self {
        self.body = Body::Json(body);
        self
    }
    fn raw(mut self, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Raw(content_type, body.into());
        self
    }
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    fn tus(self) -> Self {
        self.header("Tus-Resumable", "1.0.0")
    }
    fn expect(mut self, status: u16, code: &'static str) -> Self {
        self.status = status;
        self.code = Some(code);
        self
    }
    fn expect_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
}

/// Ids that are not ids, as they appear in a path segment.
const NOT_IDS: [&str; 5] = [
    "..%2F..%2Fetc%2Fpasswd",
    "%00",
    "1%3BDROP%20TABLE%20posts",
    "-1",
    "999999",
];

fn ten_thousand_digits() -> String {
    "9".repeat(10_000)
}

/// Row counts and the state of every live and upload: what a bad request must not change.
async fn snapshot(app: &TestApp) -> Vec<String> {
    let pool = app.database().await;
    let mut rows = Vec::new();
    for table in [
        "users",
        "sessions",
        "posts",
        "media",
        "media_files",
        "uploads",
        "chat_messages",
        "live_viewers",
    ] {
        let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .expect("count");
        rows.push(format!("{table}={count}"));
    }
    // Plain columns, joined here: string aggregation differs between SQLite and PostgreSQL.
    let posts: Vec<(i64, Option<String>, Option<i64>, i64)> = sqlx::query_as(
        "SELECT id, live_status, ended_at, chat_message_count FROM posts ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .expect("posts");
    let uploads: Vec<(i64, String, i64, Option<i64>, String)> = sqlx::query_as(
        r#"SELECT post_id, id, "offset", length, state FROM uploads ORDER BY post_id, id"#,
    )
    .fetch_all(&pool)
    .await
    .expect("uploads");
    let states = posts.into_iter().map(|(id, status, ended_at, chats)| {
        let uploads: Vec<String> = uploads
            .iter()
            .filter(|upload| upload.0 == id)
            .map(|(_, upload, offset, length, state)| {
                format!("{upload}@{offset}/{length:?}/{state}")
            })
            .collect();
        format!("{id}:{status:?}:{ended_at:?}:{chats}:{}", uploads.join(","))
    });
    rows.extend(states);
    pool.close().await;
    rows
}

struct World {
    app: TestApp,
    owner: TestUser,
    other: TestUser,
    /// Owner's live with the fixture's first 4000 bytes uploaded.
    live: TestLive,
    /// An ended live's Media id.
    media_id: i64,
}

async fn world() -> World {
    let app = spawn_app().await;
    let owner = app.user().await;
    let other = app.user().await;
    let (ended, bytes) = app.uploaded_live(&owner, "ended").await;
    let stopped = app
        .stop(&owner.token, ended.id, TestApp::video_data(&ended, &bytes))
        .await;
    assert_eq!(stopped.status(), StatusCode::OK);
    let post: Value = stopped.json().await.unwrap();
    let media_id = post["media_files"][0]["id"].as_i64().unwrap();
    let live = app.start_live(&owner, "running").await;
    let first = app
        .patch(&owner.token, &live.upload_url, 0, &bytes[..4000])
        .await;
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    World {
        app,
        owner,
        other,
        live,
        media_id,
    }
}

fn cases(w: &World) -> Vec<Case> {
    use Method as M;
    use Who::*;
    let live = w.live.id;
    let upload = w.live.upload_url.clone();
    let stop = format!("/api/posts/live/{live}/stop/");
    let chat = format!("/api/posts/live/{live}/chat/");
    let poster = format!("/api/posts/live/{live}/poster/");
    let good_stop = json!({"video_data": {"upload_url": upload, "size": 4000}});
    let mut all = vec![
        // Auth.
        case(
            "register, malformed JSON",
            M::POST,
            "/api/auth/register",
            Nobody,
        )
        .raw("application/json", "{\"username\":")
        .expect(400, "invalid_json"),
        case(
            "register, wrong types",
            M::POST,
            "/api/auth/register",
            Nobody,
        )
        .json(json!({"username": 1, "password": ["x"]}))
        .expect(400, "invalid_json"),
        case(
            "register, missing fields",
            M::POST,
            "/api/auth/register",
            Nobody,
        )
        .json(json!({"username": "zed"}))
        .expect(400, "invalid_json"),
        case("register, not JSON", M::POST, "/api/auth/register", Nobody)
            .raw("text/plain", "username=zed")
            .expect(415, "unsupported_media_type"),
        case(
            "register, 3 MiB body",
            M::POST,
            "/api/auth/register",
            Nobody,
        )
        .json(json!({"username": "x".repeat(3 << 20), "password": "password123"}))
        .expect(413, "too_large"),
        case("login, malformed JSON", M::POST, "/api/auth/login", Nobody)
            .raw("application/json", "[[[")
            .expect(400, "invalid_json"),
        case("login, unknown user", M::POST, "/api/auth/login", Nobody)
            .json(json!({"username": "nobody", "password": "password123"}))
            .expect(401, "invalid_credentials"),
        case("login, wrong password", M::POST, "/api/auth/login", Nobody)
            .json(json!({"username": w.owner.username, "password": "wrongpass1"}))
            .expect(401, "invalid_credentials"),
        // Lives.
        case("start, no token", M::POST, "/api/posts/live/", Nobody)
            .json(json!({"content": "x"}))
            .expect(401, "unauthenticated"),
        case("start, garbage token", M::POST, "/api/posts/live/", Garbage)
            .json(json!({"content": "x"}))
            .expect(401, "unauthenticated"),
        case(
            "start, content not a string",
            M::POST,
            "/api/posts/live/",
            Owner,
        )
        .json(json!({"content": 12}))
        .expect(400, "invalid_json"),
        case("start, blank content", M::POST, "/api/posts/live/", Owner)
            .json(json!({"content": "  "}))
            .expect(400, "invalid_input"),
        case("start, 501 characters", M::POST, "/api/posts/live/", Owner)
            .json(json!({"content": "é".repeat(501)}))
            .expect(400, "invalid_input"),
        case("stop, no token", M::PUT, &stop, Nobody)
            .json(good_stop.clone())
            .expect(401, "unauthenticated"),
        case("stop, garbage token", M::PUT, &stop, Garbage)
            .json(good_stop.clone())
            .expect(401, "unauthenticated"),
        case("stop, another user's token", M::PUT, &stop, Other)
            .json(good_stop.clone())
            .expect(403, "forbidden"),
        case("stop, malformed JSON", M::PUT, &stop, Owner)
            .raw("application/json", "{\"video_data\": {")
            .expect(400, "invalid_json"),
        // A stop without video_data is an empty stop (lives.rs); one of the wrong shape is not.
        case("stop, video_data not an object", M::PUT, &stop, Owner)
            .json(json!({"video_data": "recorded"}))
            .expect(400, "invalid_json"),
        case("stop, blob URL", M::PUT, &stop, Owner)
            .json(json!({"video_data": {"url": "blob:http://x/1"}}))
            .expect(400, "blob_url"),
        case("stop, size mismatch", M::PUT, &stop, Owner)
            .json(json!({"video_data": {"upload_url": upload, "size": 3999}}))
            .expect(409, "size_mismatch"),
        case("stop, huge size", M::PUT, &stop, Owner)
            .json(json!({"video_data": {"upload_url": upload, "size": u64::MAX}}))
            .expect(409, "size_mismatch"),
        case("stop, bad sha256", M::PUT, &stop, Owner)
            .json(json!({"video_data": {"upload_url": upload, "sha256": "zz"}}))
            .expect(400, "invalid_input"),
        case("stop, forged upload url", M::PUT, &stop, Owner)
            .json(json!({"video_data": {"upload_url": "/api/uploads/../../etc/passwd"}}))
            .expect(400, "invalid_upload"),
        case("stop, another live's id", M::PUT, &stop, Owner)
            .json(json!({"video_data": {"live_id": live + 1}}))
            .expect(400, "live_mismatch"),
        case("poster, no token", M::PUT, &poster, Nobody)
            .raw("image/jpeg", vec![0xFF, 0xD8, 0xFF])
            .expect(401, "unauthenticated"),
        case("poster, another user's token", M::PUT, &poster, Other)
            .raw("image/jpeg", vec![0xFF, 0xD8, 0xFF])
            .expect(403, "forbidden"),
        case("poster, not a JPEG type", M::PUT, &poster, Owner)
            .raw("image/svg+xml", "<svg onload=alert(1)>")
            .expect(415, "unsupported_media_type"),
        case("poster, over 1 MiB", M::PUT, &poster, Owner)
            .raw("image/jpeg", vec![0xFF; (1 << 20) + 1])
            .expect(413, "too_large"),
        // The live room.
        case("chat, no token", M::POST, &chat, Nobody)
            .json(json!({"body": "hi"}))
            .expect(401, "unauthenticated"),
        case("chat, garbage token", M::POST, &chat, Garbage)
            .json(json!({"body": "hi"}))
            .expect(401, "unauthenticated"),
        case("chat, body not a string", M::POST, &chat, Other)
            .json(json!({"body": {"$gt": ""}}))
            .expect(400, "invalid_json"),
        case("chat, 501 characters", M::POST, &chat, Other)
            .json(json!({"body": "😀".repeat(501)}))
            .expect(400, "invalid_chat_body"),
        case(
            "events, bad viewer_id",
            M::GET,
            format!("/api/posts/live/{live}/events?viewer_id=%00%00%00%00%00%00%00%00"),
            Nobody,
        )
        .expect(400, "invalid_query"),
        // Uploads (tus).
        case(
            "create upload, no tus version",
            M::POST,
            "/api/uploads/",
            Owner,
        )
        .header("Upload-Defer-Length", "1")
        .expect(412, "unsupported_tus_version"),
        case("create upload, no token", M::POST, "/api/uploads/", Nobody)
            .tus()
            .header("Upload-Defer-Length", "1")
            .expect(401, "unauthenticated"),
        case(
            "create upload, another user's live",
            M::POST,
            "/api/uploads/",
            Other,
        )
        .tus()
        .header("Upload-Defer-Length", "1")
        .header(
            "Upload-Metadata",
            format!("live_id {}", b64(&live.to_string())),
        )
        .expect(403, "forbidden"),
        case(
            "create upload, metadata not base64",
            M::POST,
            "/api/uploads/",
            Owner,
        )
        .tus()
        .header("Upload-Defer-Length", "1")
        .header("Upload-Metadata", "live_id !!!")
        .expect(400, "invalid_input"),
        case(
            "create upload, negative length",
            M::POST,
            "/api/uploads/",
            Owner,
        )
        .tus()
        .header("Upload-Length", "-1")
        .expect(400, "invalid_header"),
        case("create upload, NaN length", M::POST, "/api/uploads/", Owner)
            .tus()
            .header("Upload-Length", "NaN")
            .expect(400, "invalid_header"),
        case("HEAD, no token", M::HEAD, &upload, Nobody)
            .tus()
            .expect_status(401),
        case("HEAD, another user's token", M::HEAD, &upload, Other)
            .tus()
            .expect_status(403),
        case(
            "DELETE upload, another user's token",
            M::DELETE,
            &upload,
            Other,
        )
        .tus()
        .expect(403, "forbidden"),
        case("DELETE upload, garbage token", M::DELETE, &upload, Garbage)
            .tus()
            .expect(401, "unauthenticated"),
    ];
    for (name, who, offset, content_type, status, code) in [
        (
            "no token",
            Nobody,
            "4000",
            "application/offset+octet-stream",
            401,
            "unauthenticated",
        ),
        (
            "another user's token",
            Other,
            "4000",
            "application/offset+octet-stream",
            403,
            "forbidden",
        ),
        (
            "negative offset",
            Owner,
            "-1",
            "application/offset+octet-stream",
            400,
            "invalid_header",
        ),
        (
            "NaN offset",
            Owner,
            "NaN",
            "application/offset+octet-stream",
            400,
            "invalid_header",
        ),
        (
            "huge offset",
            Owner,
            "99999999999999999999999",
            "application/offset+octet-stream",
            400,
            "invalid_header",
        ),
        (
            "wrong offset",
            Owner,
            "12",
            "application/offset+octet-stream",
            409,
            "offset_mismatch",
        ),
        (
            "wrong content type",
            Owner,
            "4000",
            "application/json",
            415,
            "unsupported_media_type",
        ),
    ] {
        all.push(
            case(format!("PATCH, {name}"), M::PATCH, &upload, who)
                .tus()
                .header("Upload-Offset", offset)
                .raw(content_type, vec![0u8; 100])
                .expect(status, code),
        );
    }
    // Method overrides must not turn a refused request into an allowed one.
    for (name, method, path, who, header) in [
        (
            "POST + override PUT on stop",
            M::POST,
            stop.clone(),
            Other,
            "PUT",
        ),
        (
            "POST + override DELETE on an upload",
            M::POST,
            upload.clone(),
            Other,
            "DELETE",
        ),
        (
            "GET + override DELETE on an upload",
            M::GET,
            upload.clone(),
            Other,
            "DELETE",
        ),
    ] {
        all.push(
            case(format!("{name} (header)"), method.clone(), &path, who)
                .tus()
                .header("X-HTTP-Method-Override", header)
                .json(good_stop.clone())
                .expect(405, "method_not_allowed"),
        );
        all.push(
            case(
                format!("{name} (_method)"),
                method,
                format!("{path}?_method={header}"),
                who,
            )
            .tus()
            .json(good_stop.clone())
            .expect(405, "method_not_allowed"),
        );
    }
    all.push(
        case(
            "PATCH + override DELETE by another user",
            M::PATCH,
            &upload,
            Other,
        )
        .tus()
        .header("X-HTTP-Method-Override", "DELETE")
        .header("Upload-Offset", "4000")
        .raw("application/offset+octet-stream", vec![0u8; 10])
        .expect(403, "forbidden"),
    );
    // Feed.
    for (query, code) in [
        ("limit=0", "invalid_query"),
        ("limit=1000000", "invalid_query"),
        ("limit=-5", "invalid_query"),
        ("limit=abc", "invalid_query"),
        ("limit=1e3", "invalid_query"),
        ("cursor=AAAA", "invalid_query"),
        ("cursor=cDA", "invalid_query"),
        ("cursor=%27%20OR%201%3D1%20--", "invalid_query"),
    ] {
        all.push(
            case(
                format!("feed, {query}"),
                M::GET,
                format!("/api/posts/?{query}"),
                Nobody,
            )
            .expect(400, code),
        );
    }
    // Ids that are not ids, on every route that takes one.
    let mut ids: Vec<String> = NOT_IDS.iter().map(|s| (*s).to_owned()).collect();
    ids.push(ten_thousand_digits());
    for id in &ids {
        for (method, path, who) in [
            (M::GET, format!("/api/posts/{id}/"), Nobody),
            (M::GET, format!("/api/posts/{id}/chat/"), Nobody),
            (
                M::GET,
                format!("/api/posts/live/{id}/events?viewer_id=abcdefgh"),
                Nobody,
            ),
            (M::GET, format!("/api/posts/live/{id}/stream"), Nobody),
            (M::PUT, format!("/api/posts/live/{id}/stop/"), Owner),
            (M::POST, format!("/api/posts/live/{id}/chat/"), Owner),
            (M::GET, format!("/media/{id}"), Nobody),
            (M::GET, format!("/media/{id}/poster"), Nobody),
            (M::PATCH, format!("/api/uploads/{id}"), Owner),
            (M::DELETE, format!("/api/uploads/{id}"), Owner),
        ] {
            let short: String = id.chars().take(24).collect();
            let mut c = case(
                format!("{method} {} with id {short}", path.replace(id, "{id}")),
                method.clone(),
                path,
                who,
            )
            .expect(404, "not_found");
            if method == M::PUT {
                c = c.json(good_stop.clone());
            } else if method == M::POST {
                c = c.json(json!({"body": "hi"}));
            } else if method == M::PATCH {
                c = c.tus().header("Upload-Offset", "0").raw(
                    "application/offset+octet-stream",
                    vec![0x1A, 0x45, 0xDF, 0xA3],
                );
            } else if method == M::DELETE {
                c = c.tus();
            }
            all.push(c);
        }
    }
    let _ = w.media_id;
    all
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

async fn send(w: &World, c: &Case) -> reqwest::Response {
    let token = match c.who {
        Who::Nobody => None,
        Who::Garbage => Some("garbage.token.value".to_owned()),
        Who::Owner => Some(w.owner.token.clone()),
        Who::Other => Some(w.other.token.clone()),
    };
    let mut request = w.app.request(c.method.clone(), &c.path, token.as_deref());
    for (name, value) in &c.headers {
        request = request.header(*name, value);
    }
    request = match &c.body {
        Body::None => request,
        Body::Json(value) => request.json(value),
        Body::Raw(content_type, bytes) => request
            .header("Content-Type", *content_type)
            .body(bytes.clone()),
    };
    request.send().await.expect("the server answers")
}

async fn assert_error(name: &str, response: reqwest::Response, status: u16, code: Option<&str>) {
    if let Err(failure) = check_error(name, response, status, code).await {
        panic!("{failure}");
    }
}

/// `Err` with what is wrong when the answer is not the expected JSON 4xx.
async fn check_error(
    name: &str,
    response: reqwest::Response,
    status: u16,
    code: Option<&str>,
) -> Result<(), String> {
    let got = response.status().as_u16();
    if got != status {
        return Err(format!("{name}: status {got}, expected {status}"));
    }
    let headers: HeaderMap = response.headers().clone();
    let text = response.text().await.map_err(|e| format!("{name}: {e}"))?;
    if text.is_empty() {
        return match code {
            None => Ok(()),
            Some(_) => Err(format!("{name}: no body")),
        };
    }
    let json_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let body: Value = serde_json::from_str(&text).map_err(|_| format!("{name}: {text}"))?;
    let got_code = body["error"]["code"].as_str();
    if !json_type || !body["error"]["message"].is_string() || got_code.is_none() {
        return Err(format!("{name}: not the error shape: {headers:?} {text}"));
    }
    match code {
        Some(code) if got_code != Some(code) => {
            Err(format!("{name}: code {got_code:?}, expected {code}"))
        }
        _ => Ok(()),
    }
}

#[tokio::test]
async fn every_route_refuses_bad_input_with_a_json_4xx_and_changes_nothing() {
    let w = world().await;
    let before = snapshot(&w.app).await;
    let cases = cases(&w);
    assert!(cases.len() > 100, "{} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let response = send(&w, c).await;
        if let Err(failure) = check_error(&c.name, response, c.status, c.code).await {
            failures.push(failure);
        }
        let after = snapshot(&w.app).await;
        if before != after {
            failures.push(format!("{}: the database changed: {after:?}", c.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // The live is untouched: its owner can still finish it.
    let bytes = fixture();
    let rest = w
        .app
        .patch(&w.owner.token, &w.live.upload_url, 4000, &bytes[4000..])
        .await;
    assert_eq!(rest.status(), StatusCode::NO_CONTENT);
    let stopped = w
        .app
        .stop(
            &w.owner.token,
            w.live.id,
            TestApp::video_data(&w.live, &bytes),
        )
        .await;
    assert_eq!(stopped.status(), StatusCode::OK);
}

#[tokio::test]
async fn usernames_take_only_ascii_names_and_refuse_control_bidi_and_emoji() {
    let app = spawn_app().await;
    let before = snapshot(&app).await;
    for name in [
        "bell\u{7}",
        "nul\u{0}x",
        "evil\u{202E}gnp",
        "emoji😀",
        "../../etc/passwd",
        "a b",
        "",
        &"a".repeat(33),
        &ten_thousand_digits(),
    ] {
        let response = app
            .register_raw(json!({"username": name, "password": "password123"}))
            .await;
        assert_error(
            &format!("username {name:?}"),
            response,
            400,
            Some("invalid_input"),
        )
        .await;
    }
    assert_eq!(before, snapshot(&app).await);
}

#[tokio::test]
async fn chat_takes_4_byte_utf8_but_refuses_control_characters_and_bidi_overrides() {
    let app = spawn_app().await;
    let owner = app.user().await;
    let viewer = app.user().await;
    let live = app.start_live(&owner, "chat rules").await;
    let before = snapshot(&app).await;
    for body in [
        "nul\u{0}",
        "bell\u{7}x",
        "rtl \u{202E}gnp.exe",
        "iso\u{2066}x",
        "esc\u{1b}[31m",
    ] {
        let response = app.chat(Some(&viewer.token), live.id, body).await;
        assert_error(
            &format!("chat {body:?}"),
            response,
            400,
            Some("invalid_chat_body"),
        )
        .await;
    }
    assert_eq!(before, snapshot(&app).await);
    let response = app.chat(Some(&viewer.token), live.id, "bravo 🎉𝄞").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let message: Value = response.json().await.unwrap();
    assert_eq!(message["body"], "bravo 🎉𝄞");
}

#[tokio::test]
async fn a_first_patch_that_is_neither_webm_nor_mp4_gets_415_and_keeps_nothing() {
    let app = spawn_app().await;
    let owner = app.user().await;
    let live = app.start_live(&owner, "not a video").await;
    let before = snapshot(&app).await;
    for bytes in [
        b"<html><script>alert(1)</script></html>".to_vec(),
        b"GIF89a\x01\x00\x01\x00".to_vec(),
        vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F'],
    ] {
        let response = app.patch(&owner.token, &live.upload_url, 0, &bytes).await;
        assert_error(
            "non-video PATCH",
            response,
            415,
            Some("unsupported_media_type"),
        )
        .await;
        assert_eq!(before, snapshot(&app).await);
    }
    let head = app.head(&owner.token, &live.upload_url).await;
    assert_eq!(head.headers()["upload-offset"], "0");
    app.upload_all(&owner, &live, &fixture()).await;
}

#[tokio::test]
async fn a_zero_byte_recording_ends_the_live_without_a_media_or_a_file() {
    let app = spawn_app().await;
    let owner = app.user().await;
    let live = app.start_live(&owner, "empty").await;
    let response = app
        .stop(&owner.token, live.id, TestApp::video_data(&live, &[]))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let post: serde_json::Value = response.json().await.unwrap();
    assert_eq!(post["live_status"], "ended");
    assert_eq!(post["media_files"], serde_json::json!([]));
    // Nothing half-written: no Media row and no file, in the feed or in storage.
    let feed = app.get_json("/api/posts/").await;
    assert!(
        feed["results"][0]["media_files"] == serde_json::json!([]),
        "{feed}"
    );
    let rows = snapshot(&app).await;
    assert!(rows.contains(&"media=0".to_owned()), "{rows:?}");
    assert!(rows.contains(&"media_files=0".to_owned()), "{rows:?}");
}
