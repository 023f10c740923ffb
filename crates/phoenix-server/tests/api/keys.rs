//! Admin API keys (SPEC §3.3, §10): the plaintext is returned once, lists never show it, revocation
//! returns the record with `revoked_at`.

use crate::support::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const KEY_FIELDS: [&str; 7] = [
    "key_id",
    "name",
    "scopes",
    "tenant_ids",
    "created_at",
    "expires_at",
    "revoked_at",
];

#[track_caller]
fn assert_key_shape(record: &Value) {
    let object = record.as_object().expect("a key record");
    let mut fields: Vec<&str> = object.keys().map(String::as_str).collect();
    fields.sort_unstable();
    let mut expected = KEY_FIELDS.to_vec();
    expected.sort_unstable();
    assert_eq!(fields, expected, "{record}");
}

#[tokio::test]
async fn creating_a_key_returns_the_plaintext_once() {
    let app = spawn_app().await;
    app.create_tenant("t-a").await;
    let reply = app
        .admin_json(
            Method::POST,
            "/api-keys",
            &json!({"name": "ci-deployer", "scopes": ["leaderboards:read", "leaderboards:write"],
                    "tenant_ids": ["t-a"], "expires_at": "2099-01-01T00:00:00Z"}),
        )
        .await;
    reply.expect(StatusCode::CREATED);
    let key = reply.body["key"].as_str().expect("key").to_owned();
    assert!(key.starts_with("pk_"), "{key}");
    assert!(key.len() >= 35, "pk_ + at least 32 characters: {key}");
    let key_id = reply.body["key_id"].as_str().expect("key_id").to_owned();
    assert!(!key_id.is_empty() && !key.contains(&key_id));
    assert_eq!(reply.body["name"], "ci-deployer");
    assert_eq!(
        reply.body["scopes"],
        json!(["leaderboards:read", "leaderboards:write"])
    );
    assert_eq!(reply.body["tenant_ids"], json!(["t-a"]));
    assert_eq!(reply.body["expires_at"], "2099-01-01T00:00:00Z");
    assert_eq!(reply.body["revoked_at"], Value::Null);
    assert!(reply.body["created_at"].is_string());

    let list = app.admin_get("/api-keys").await;
    list.expect(StatusCode::OK);
    assert_eq!(list.body["total"], 1);
    let listed = &list.body["keys"][0];
    assert_key_shape(listed);
    assert_eq!(listed["key_id"], key_id.as_str());
    assert!(
        !list.text.contains(&key),
        "GET /api-keys leaks the plaintext"
    );
    assert!(
        !list.text.contains(&key[3..]),
        "GET /api-keys leaks the plaintext"
    );

    // Two keys are distinct.
    let (other_id, other) = app.create_key(&["leaderboards:read"], &["*"]).await;
    assert_ne!(other, key);
    assert_ne!(other_id, key_id);
    let list = app.admin_get("/api-keys").await;
    assert_eq!(list.body["total"], 2);
    for record in list.body["keys"].as_array().expect("keys") {
        assert_key_shape(record);
    }
}

#[tokio::test]
async fn revoking_a_key_returns_the_record_with_revoked_at() {
    let app = spawn_app().await;
    let (key_id, key) = app.create_key(&["leaderboards:read"], &["*"]).await;
    let reply = send(admin(
        app.request(Method::DELETE, &format!("/api-keys/{key_id}")),
    ))
    .await;
    reply.expect(StatusCode::OK);
    assert_key_shape(&reply.body);
    assert_eq!(reply.body["key_id"], key_id.as_str());
    let revoked_at: jiff::Timestamp = reply.body["revoked_at"]
        .as_str()
        .expect("revoked_at is set")
        .parse()
        .expect("an RFC 3339 timestamp");
    assert!(revoked_at <= jiff::Timestamp::now());
    assert!(!reply.text.contains(&key));

    let list = app.admin_get("/api-keys").await;
    assert_eq!(list.body["keys"][0]["revoked_at"], reply.body["revoked_at"]);
    send(admin(app.request(Method::DELETE, "/api-keys/no-such-key")))
        .await
        .expect_not_found();
}

#[tokio::test]
async fn a_key_lists_only_keys_within_its_tenants() {
    let app = spawn_app().await;
    app.create_tenant("t-a").await;
    app.create_tenant("t-b").await;
    let (a_id, a_key) = app
        .create_key(&["keys:write", "leaderboards:read"], &["t-a"])
        .await;
    let (b_id, _) = app.create_key(&["leaderboards:read"], &["t-b"]).await;
    let list = send(with_key(app.get("/api-keys"), &a_key)).await;
    list.expect(StatusCode::OK);
    let ids: Vec<&str> = list.body["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["key_id"].as_str())
        .collect();
    assert_eq!(ids, vec![a_id.as_str()]);
    // Nor can it revoke one it does not cover (SPEC §3.3: 403).
    send(with_key(
        app.request(Method::DELETE, &format!("/api-keys/{b_id}")),
        &a_key,
    ))
    .await
    .expect_forbidden();
}

#[tokio::test]
async fn a_key_neither_lists_nor_revokes_keys_holding_more_scopes_than_it_does() {
    let app = spawn_app().await;
    app.create_tenant("t-a").await;
    let (writer_id, writer) = app
        .create_key(&["keys:write", "leaderboards:read"], &["t-a"])
        .await;
    let (admin_id, _) = app.create_key(&["admin"], &["t-a"]).await;
    let (reader_id, _) = app.create_key(&["leaderboards:read"], &["t-a"]).await;
    let list = send(with_key(app.get("/api-keys"), &writer)).await;
    list.expect(StatusCode::OK);
    let mut ids: Vec<&str> = list.body["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["key_id"].as_str())
        .collect();
    ids.sort_unstable();
    let mut expected = vec![writer_id.as_str(), reader_id.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    assert_eq!(list.body["total"], 2);
    send(with_key(
        app.request(Method::DELETE, &format!("/api-keys/{admin_id}")),
        &writer,
    ))
    .await
    .expect_forbidden();
    // The admin key still works.
    let keys = app.admin_get("/api-keys").await;
    let admin_key = keys.body["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["key_id"] == admin_id.as_str())
        .expect("the admin key")
        .clone();
    assert_eq!(admin_key["revoked_at"], Value::Null);
    send(with_key(
        app.request(Method::DELETE, &format!("/api-keys/{reader_id}")),
        &writer,
    ))
    .await
    .expect(StatusCode::OK);
}

#[tokio::test]
async fn a_key_that_expires_cannot_create_one_that_outlives_it() {
    let app = spawn_app().await;
    app.create_tenant("t-a").await;
    let parent_expiry = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(2);
    let parent = app
        .admin_json(
            Method::POST,
            "/api-keys",
            &json!({"name": "parent", "scopes": ["keys:write", "leaderboards:read"],
                    "tenant_ids": ["t-a"], "expires_at": parent_expiry.to_string()}),
        )
        .await;
    parent.expect(StatusCode::CREATED);
    let parent_key = parent.body["key"].as_str().expect("key").to_owned();
    let create = |body: Value| {
        send(with_key(
            app.json(Method::POST, "/api-keys", &body),
            &parent_key,
        ))
    };
    // No expiry asked for: the child gets its creator's.
    let child = create(json!({"name": "child", "scopes": ["leaderboards:read"],
                              "tenant_ids": ["t-a"]}))
    .await;
    child.expect(StatusCode::CREATED);
    assert_eq!(
        child.body["expires_at"], parent.body["expires_at"],
        "{}",
        child.text
    );
    // Later than its creator: refused.
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(3);
    create(
        json!({"name": "late", "scopes": ["leaderboards:read"], "tenant_ids": ["t-a"],
                  "expires_at": later.to_string()}),
    )
    .await
    .expect_forbidden();
    // Earlier is fine.
    let sooner = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    create(
        json!({"name": "soon", "scopes": ["leaderboards:read"], "tenant_ids": ["t-a"],
                  "expires_at": sooner.to_string()}),
    )
    .await
    .expect(StatusCode::CREATED);
}
