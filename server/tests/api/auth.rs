use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{error_code, spawn_app, TestApp};

#[tokio::test]
async fn registering_returns_201_with_the_user_and_a_token() {
    let app = spawn_app().await;
    let response = app
        .register_raw(json!({"username": "alice", "password": "password123"}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["username"], "alice");
    assert!(body["user"]["id"].as_i64().unwrap() > 0);
    assert_eq!(body["token"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn a_taken_username_returns_409_even_in_another_case() {
    let app = spawn_app().await;
    let first = app
        .register_raw(json!({"username": "bob", "password": "password123"}))
        .await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let again = app
        .register_raw(json!({"username": "BOB", "password": "password456"}))
        .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(again).await, "username_taken");
}

#[tokio::test]
async fn invalid_usernames_and_short_passwords_return_400() {
    let app = spawn_app().await;
    for body in [
        json!({"username": "", "password": "password123"}),
        json!({"username": "a".repeat(33), "password": "password123"}),
        json!({"username": "has space", "password": "password123"}),
        json!({"username": "../etc", "password": "password123"}),
        json!({"username": "carol", "password": "short"}),
    ] {
        let response = app.register_raw(body.clone()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_code(response).await, "invalid_input", "{body}");
    }
}

#[tokio::test]
async fn malformed_json_wrong_types_and_missing_fields_return_400_invalid_json() {
    let app = spawn_app().await;
    let malformed = app
        .request(Method::POST, "/api/auth/register", None)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(malformed).await, "invalid_json");
    for body in [
        json!({"username": 5, "password": "password123"}),
        json!({"username": "dan"}),
    ] {
        let response = app.register_raw(body.clone()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_code(response).await, "invalid_json", "{body}");
    }
}

#[tokio::test]
async fn logging_in_with_the_right_password_returns_a_token_that_works() {
    let app = spawn_app().await;
    let user = app.user().await;
    let response = app
        .request(Method::POST, "/api/auth/login/", None)
        .json(&json!({"username": user.username, "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["id"], user.id);
    let token = body["token"].as_str().unwrap();
    assert_ne!(token, user.token);
    let started = app
        .request(Method::POST, "/api/posts/live/", Some(token))
        .json(&json!({"content": "with the login token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_wrong_password_or_unknown_user_returns_401_invalid_credentials() {
    let app = spawn_app().await;
    let user = app.user().await;
    for (username, password) in [
        (user.username.as_str(), "wrong-password"),
        ("nobody", "password123"),
    ] {
        let response = app
            .request(Method::POST, "/api/auth/login", None)
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(error_code(response).await, "invalid_credentials");
    }
}

#[tokio::test]
async fn writes_without_a_token_or_with_a_garbage_token_return_401() {
    let app = spawn_app().await;
    for token in [None, Some("garbage"), Some("")] {
        let response = app
            .request(Method::POST, "/api/posts/live/", token)
            .json(&json!({"content": "no"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(error_code(response).await, "unauthenticated");
    }
}

#[tokio::test]
async fn the_database_stores_a_hash_not_the_password_or_the_token() {
    let app = spawn_app().await;
    let user = app.user().await;
    let db = app.database().await;
    let hashes: Vec<String> = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_all(&db)
        .await
        .expect("users");
    assert_eq!(hashes.len(), 1);
    assert!(hashes[0].starts_with("$argon2id$"), "{}", hashes[0]);
    let tokens: Vec<Vec<u8>> = sqlx::query_scalar("SELECT token_hash FROM sessions")
        .fetch_all(&db)
        .await
        .expect("sessions");
    assert_eq!(tokens, vec![Sha256::digest(user.token.as_bytes()).to_vec()]);
    // On SQLite, not even the file's free pages or the WAL hold them.
    if app.database_url.starts_with("sqlite:") {
        let file = std::fs::read(app.data_dir.path().join("livekeep.db")).unwrap_or_default();
        let wal = std::fs::read(app.data_dir.path().join("livekeep.db-wal")).unwrap_or_default();
        for bytes in [file, wal] {
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains("password123"));
            assert!(!text.contains(&user.token));
        }
    }
}

async fn login(app: &TestApp, username: &str, password: &str) -> Response {
    app.request(Method::POST, "/api/auth/login", None)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn logging_out_deletes_the_session_so_the_token_is_refused_afterwards() {
    let app = spawn_app().await;
    let user = app.user().await;
    let other = login(&app, &user.username, "password123").await;
    let other: Value = other.json().await.unwrap();
    let other = other["token"].as_str().unwrap();

    let out = app
        .request(Method::POST, "/api/auth/logout", Some(&user.token))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);

    let start = app
        .request(Method::POST, "/api/posts/live", Some(&user.token))
        .json(&json!({"content": "after logout"}))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(start).await, "unauthenticated");
    for token in [Some(user.token.as_str()), None, Some("garbage")] {
        let again = app
            .request(Method::POST, "/api/auth/logout", token)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(error_code(again).await, "unauthenticated");
    }
    // Only that session ended: the same user's other token still works.
    let start = app
        .request(Method::POST, "/api/posts/live", Some(other))
        .json(&json!({"content": "other session"}))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn after_ten_failed_logins_a_name_gets_429_even_with_the_right_password() {
    let app = spawn_app().await;
    let user = app.user().await;
    let bystander = app.user().await;
    for _ in 0..10 {
        let response = login(&app, &user.username, "wrong-password").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // Case-folded: the same account under another spelling is the same name.
    for name in [user.username.clone(), user.username.to_uppercase()] {
        let response = login(&app, &name, "password123").await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{name}");
        let retry: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=300).contains(&retry), "Retry-After {retry}");
        assert_eq!(error_code(response).await, "rate_limited");
    }
    // Another name from the same address is not blocked by this one.
    let response = login(&app, &bystander.username, "password123").await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_successful_login_resets_the_name_s_failure_count() {
    let app = spawn_app().await;
    let user = app.user().await;
    for round in 0..2 {
        for _ in 0..9 {
            let response = login(&app, &user.username, "wrong-password").await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "round {round}");
        }
        let response = login(&app, &user.username, "password123").await;
        assert_eq!(response.status(), StatusCode::OK, "round {round}");
    }
}

#[tokio::test]
async fn after_fifty_failed_logins_from_one_address_every_name_gets_429() {
    let app = spawn_app().await;
    let user = app.user().await;
    // Five failures on each of ten names: no name reaches its own limit of ten.
    for n in 0..50 {
        let response = login(&app, &format!("guess{}", n % 10), "wrong-password").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    let response = login(&app, &user.username, "password123").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(error_code(response).await, "rate_limited");
}
