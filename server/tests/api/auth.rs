use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{error_code, spawn_app};

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
    let db = std::fs::read(app.data_dir.path().join("livekeep.db")).unwrap_or_default();
    let wal = std::fs::read(app.data_dir.path().join("livekeep.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("password123"));
        assert!(!text.contains(&user.token));
    }
}
