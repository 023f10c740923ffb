//! The conformance suite every [`Store`] backend must pass. Each check uses fresh ids (with `prefix`), so
//! the suite can run against a shared database as well as a fresh embedded data dir.

use crate::model::{
    LeaderboardPatch, LeaderboardStatus, NewApiKey, NewLeaderboard, NewUser, RateLimits,
    RefreshOutcome, Role, SessionTokens, TenantPatch, UnscopedTokens, UserPatch,
};
use crate::{Store, StoreError};
use jiff::{SignedDuration, Timestamp};
use phoenix_core::access::{Scope, Scopes, TenantAccess};
use phoenix_core::ids::{LeaderboardId, TenantId};
use sha2::{Digest, Sha256};

fn tid(prefix: &str, name: &str) -> TenantId {
    TenantId::parse(&format!("{prefix}-{name}")).expect("test tenant id")
}

/// Runs every check; panics (test failure) on the first broken contract.
pub async fn run_all(store: &dyn Store, prefix: &str) {
    tenants(store, prefix).await;
    signatures(store, prefix).await;
    api_keys(store, prefix).await;
    leaderboards(store, prefix).await;
    scoring(store, prefix).await;
    users_and_sessions(store, prefix).await;
}

fn token_pair(seed: &str, access_for: SignedDuration) -> SessionTokens {
    let now = Timestamp::now();
    SessionTokens {
        family_id: String::new(),
        access_hash: Sha256::digest(format!("access-{seed}")).into(),
        access_expires_at: now + access_for,
        refresh_hash: Sha256::digest(format!("refresh-{seed}")).into(),
        refresh_expires_at: now + SignedDuration::from_hours(1),
    }
}

/// Console users, and sessions whose refresh tokens work once: reuse revokes the family; a new password
/// or deleting the user ends every session.
pub async fn users_and_sessions(store: &dyn Store, prefix: &str) {
    let name = format!("{prefix}-alice");
    let new = |role| NewUser {
        username: name.clone(),
        role,
        password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
    };
    // Another ADMIN, so alice may be demoted and deleted below (an ADMIN always remains).
    store
        .create_user(NewUser {
            username: format!("{prefix}-keeper"),
            role: Role::Admin,
            password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        })
        .await
        .expect("create user");
    let alice = store
        .create_user(new(Role::Admin))
        .await
        .expect("create user");
    assert_eq!(alice.role, Role::Admin);
    let dup = store.create_user(new(Role::Viewer)).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert!(store.list_users().await.unwrap().contains(&alice));
    assert_eq!(
        store.user_password_hash(&name).await.unwrap().as_deref(),
        Some("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA")
    );

    // Login, then a refresh: the old pair stops working, the new one works.
    let first = token_pair(&format!("{prefix}-1"), SignedDuration::from_mins(15));
    let session = store
        .start_session(&name, first.clone())
        .await
        .unwrap()
        .expect("user exists");
    assert_eq!(session.user.username, name);
    let by_access = store.session_by_access(&first.access_hash).await.unwrap();
    assert_eq!(
        by_access.map(|s| s.family_id),
        Some(session.family_id.clone())
    );
    assert!(
        store
            .refresh_token_known(&first.refresh_hash, "")
            .await
            .unwrap()
    );
    assert!(
        !store
            .refresh_token_known(&first.access_hash, "")
            .await
            .unwrap()
    );
    let mut second = token_pair(&format!("{prefix}-2"), SignedDuration::from_mins(15));
    second.family_id = session.family_id.clone();
    let outcome = store
        .refresh_session(&first.refresh_hash, second.clone())
        .await
        .unwrap();
    assert!(
        matches!(outcome, RefreshOutcome::Rotated(ref u) if u.username == name),
        "{outcome:?}"
    );
    assert_eq!(
        store.session_by_access(&first.access_hash).await.unwrap(),
        None
    );
    assert!(
        store
            .session_by_access(&second.access_hash)
            .await
            .unwrap()
            .is_some()
    );

    // Reusing the spent refresh token revokes the whole family, the new pair included.
    let third = token_pair(&format!("{prefix}-3"), SignedDuration::from_mins(15));
    let reuse = store
        .refresh_session(&first.refresh_hash, third.clone())
        .await
        .unwrap();
    assert_eq!(reuse, RefreshOutcome::Reused);
    assert!(
        !store
            .refresh_token_known(&second.refresh_hash, &session.family_id)
            .await
            .unwrap()
    );
    assert_eq!(
        store.session_by_access(&second.access_hash).await.unwrap(),
        None
    );
    let after = store
        .refresh_session(&second.refresh_hash, third)
        .await
        .unwrap();
    assert_eq!(after, RefreshOutcome::Invalid);

    // Any spent refresh token of a live family revokes it, not only the last one spent: R1 → R2 → R3,
    // then R1 again.
    let family = format!("{prefix}-chain-family");
    let chain: Vec<SessionTokens> = (1..=3)
        .map(|i| {
            let mut pair = token_pair(
                &format!("{prefix}-chain-{i}"),
                SignedDuration::from_mins(15),
            );
            pair.family_id = family.clone();
            pair
        })
        .collect();
    let started = store
        .start_session(&name, chain[0].clone())
        .await
        .unwrap()
        .expect("user exists");
    assert_eq!(started.family_id, family);
    for i in 0..2 {
        let outcome = store
            .refresh_session(&chain[i].refresh_hash, chain[i + 1].clone())
            .await
            .unwrap();
        assert!(matches!(outcome, RefreshOutcome::Rotated(_)), "{outcome:?}");
    }
    assert!(
        store
            .refresh_token_known(&chain[0].refresh_hash, &family)
            .await
            .unwrap()
    );
    // A spent token's family can be revoked by its id (a logout with a spent refresh token); here it
    // is only checked that an unknown family is not, since the replay below revokes this one.
    assert!(!store.revoke_family("no-such-family").await.unwrap());
    let mut replay = token_pair(&format!("{prefix}-chain-4"), SignedDuration::from_mins(15));
    replay.family_id = family.clone();
    assert_eq!(
        store
            .refresh_session(&chain[0].refresh_hash, replay.clone())
            .await
            .unwrap(),
        RefreshOutcome::Reused
    );
    assert_eq!(
        store
            .session_by_access(&chain[2].access_hash)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .refresh_session(&chain[2].refresh_hash, replay)
            .await
            .unwrap(),
        RefreshOutcome::Invalid
    );

    // A family revoked by its id ends its tokens.
    let mut by_id = token_pair(&format!("{prefix}-by-id"), SignedDuration::from_mins(15));
    by_id.family_id = format!("{prefix}-by-id-family");
    store.start_session(&name, by_id.clone()).await.unwrap();
    assert!(store.revoke_family(&by_id.family_id).await.unwrap());
    assert_eq!(
        store.session_by_access(&by_id.access_hash).await.unwrap(),
        None
    );
    assert!(!store.revoke_family(&by_id.family_id).await.unwrap());

    // Expired access tokens do not work; a role change applies to live sessions at once.
    let expired = token_pair(&format!("{prefix}-4"), SignedDuration::from_secs(-1));
    store.start_session(&name, expired.clone()).await.unwrap();
    assert_eq!(
        store.session_by_access(&expired.access_hash).await.unwrap(),
        None
    );
    let live = token_pair(&format!("{prefix}-5"), SignedDuration::from_mins(15));
    store.start_session(&name, live.clone()).await.unwrap();
    let patched = store
        .update_user(
            &name,
            UserPatch {
                role: Some(Role::Viewer),
                password_hash: None,
            },
        )
        .await
        .unwrap()
        .expect("user exists");
    assert_eq!(patched.role, Role::Viewer);
    let now_viewer = store.session_by_access(&live.access_hash).await.unwrap();
    assert_eq!(now_viewer.map(|s| s.user.role), Some(Role::Viewer));

    // Logout (revoke by either token) ends the family.
    assert!(store.revoke_session(&live.refresh_hash).await.unwrap());
    assert!(!store.revoke_session(&live.access_hash).await.unwrap());
    assert_eq!(
        store.session_by_access(&live.access_hash).await.unwrap(),
        None
    );

    // A new password ends every session; so does deleting the user.
    let six = token_pair(&format!("{prefix}-6"), SignedDuration::from_mins(15));
    store.start_session(&name, six.clone()).await.unwrap();
    store
        .update_user(
            &name,
            UserPatch {
                role: None,
                password_hash: Some("$argon2id$new".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.session_by_access(&six.access_hash).await.unwrap(),
        None
    );
    let seven = token_pair(&format!("{prefix}-7"), SignedDuration::from_mins(15));
    store.start_session(&name, seven.clone()).await.unwrap();
    let removed = store
        .delete_user(&name)
        .await
        .unwrap()
        .expect("user exists");
    assert_eq!(removed.username, name);
    assert_eq!(
        store.session_by_access(&seven.access_hash).await.unwrap(),
        None
    );
    assert_eq!(store.get_user(&name).await.unwrap(), None);
    assert!(
        store
            .start_session(&name, token_pair("gone", SignedDuration::from_mins(1)))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .update_user(&name, UserPatch::default())
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.delete_user(&name).await.unwrap(), None);

    // A user kept for the persistence checks.
    store
        .create_user(NewUser {
            username: format!("{prefix}-kept"),
            role: Role::Viewer,
            password_hash: "$argon2id$kept".into(),
        })
        .await
        .unwrap();
}

pub async fn tenants(store: &dyn Store, prefix: &str) {
    let t = tid(prefix, "t1");
    let created = store
        .create_tenant(t.clone(), "One".into(), "secret-1".into())
        .await
        .expect("create tenant");
    assert_eq!(created.name, "One");
    let dup = store
        .create_tenant(t.clone(), "Again".into(), "x".into())
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    assert_eq!(store.get_tenant(t.as_str()).await.unwrap(), Some(created));
    assert!(
        store
            .list_tenants()
            .await
            .unwrap()
            .iter()
            .any(|x| x.tenant_id == t)
    );
    assert!(
        store
            .get_tenant("no-such-tenant-x")
            .await
            .unwrap()
            .is_none()
    );

    let secrets = store.tenant_secrets(t.as_str()).await.unwrap().unwrap();
    assert_eq!(secrets.current, "secret-1");
    assert!(secrets.previous.is_none());

    // Settings: a patch changes only what it names; a rate limit can go back to the default.
    assert_eq!(secrets.unscoped_tokens, UnscopedTokens::Allow);
    assert_eq!(secrets.rate_limits, RateLimits::default());
    let patched = store
        .update_tenant(
            t.as_str(),
            TenantPatch {
                unscoped_tokens: Some(UnscopedTokens::Deny),
                events_per_second: Some(Some(500)),
                reads_per_second: Some(Some(0)),
                ..TenantPatch::default()
            },
        )
        .await
        .unwrap()
        .expect("tenant exists");
    assert_eq!(patched.name, "One");
    assert_eq!(patched.unscoped_tokens, UnscopedTokens::Deny);
    assert_eq!(patched.rate_limits.events_per_second, Some(500));
    assert_eq!(patched.rate_limits.reads_per_second, Some(0));
    assert_eq!(patched.rate_limits.player_requests_per_second, None);
    let secrets = store.tenant_secrets(t.as_str()).await.unwrap().unwrap();
    assert_eq!(secrets.unscoped_tokens, UnscopedTokens::Deny);
    assert_eq!(secrets.rate_limits.events_per_second, Some(500));
    let renamed = store
        .update_tenant(
            t.as_str(),
            TenantPatch {
                name: Some("Uno".into()),
                unscoped_tokens: Some(UnscopedTokens::Allow),
                events_per_second: Some(None),
                ..TenantPatch::default()
            },
        )
        .await
        .unwrap()
        .expect("tenant exists");
    assert_eq!(renamed.name, "Uno");
    assert_eq!(renamed.rate_limits.events_per_second, None);
    assert_eq!(renamed.rate_limits.reads_per_second, Some(0));
    assert_eq!(store.get_tenant(t.as_str()).await.unwrap(), Some(renamed));
    assert_eq!(
        store
            .update_tenant("no-such-tenant-x", TenantPatch::default())
            .await
            .unwrap(),
        None
    );

    let until = Timestamp::now() + SignedDuration::from_hours(24);
    store
        .rotate_tenant_secret(t.as_str(), "secret-2".into(), until)
        .await
        .unwrap()
        .expect("tenant exists");
    let secrets = store.tenant_secrets(t.as_str()).await.unwrap().unwrap();
    assert_eq!(secrets.current, "secret-2");
    let valid: Vec<&str> = secrets.valid_at(Timestamp::now()).collect();
    assert_eq!(valid, ["secret-2", "secret-1"]);
    let later: Vec<&str> = secrets
        .valid_at(until + SignedDuration::from_secs(1))
        .collect();
    assert_eq!(later, ["secret-2"]);
    assert!(
        store
            .rotate_tenant_secret("no-such-tenant-x", "s".into(), until)
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn signatures(store: &dyn Store, prefix: &str) {
    let digest: [u8; 32] = Sha256::digest(format!("{prefix}-signature").as_bytes()).into();
    let until = Timestamp::now() + SignedDuration::from_secs(300);
    assert!(store.use_signature_once(digest, until).await.unwrap());
    assert!(!store.use_signature_once(digest, until).await.unwrap());
    let other: [u8; 32] = Sha256::digest(format!("{prefix}-other").as_bytes()).into();
    assert!(store.use_signature_once(other, until).await.unwrap());
}

pub async fn api_keys(store: &dyn Store, prefix: &str) {
    let plaintext = format!("pk_{prefix}_conformance_key_0123456789abcdef");
    let hash: [u8; 32] = Sha256::digest(plaintext.as_bytes()).into();
    let key_id = format!("{prefix}-key-1");
    let new = NewApiKey {
        key_id: key_id.clone(),
        name: "ci".into(),
        scopes: Scopes::from_iter([Scope::LeaderboardsRead]),
        tenant_ids: TenantAccess::one(tid(prefix, "t1")),
        expires_at: None,
        key_hash: hash,
        plaintext: plaintext.clone(),
    };
    let key = store.create_api_key(new.clone()).await.expect("create key");
    assert!(key.revoked_at.is_none());
    assert!(matches!(
        store.create_api_key(new).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.find_api_key_by_hash(&hash).await.unwrap(),
        Some(key.clone())
    );
    assert_eq!(store.get_api_key(&key_id).await.unwrap(), Some(key.clone()));
    assert_eq!(
        store.api_key_secret(&key_id).await.unwrap().as_deref(),
        Some(plaintext.as_str())
    );
    assert!(
        store
            .find_api_key_by_hash(&[0u8; 32])
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .list_api_keys()
            .await
            .unwrap()
            .iter()
            .any(|k| k.key_id == key_id)
    );

    let revoked = store.revoke_api_key(&key_id).await.unwrap().unwrap();
    let at = revoked.revoked_at.expect("revoked_at set");
    assert!(!revoked.is_active(Timestamp::now()));
    let again = store.revoke_api_key(&key_id).await.unwrap().unwrap();
    assert_eq!(
        again.revoked_at,
        Some(at),
        "revocation keeps its first time"
    );
    assert!(store.revoke_api_key("nope").await.unwrap().is_none());
}

pub async fn leaderboards(store: &dyn Store, prefix: &str) {
    let t = tid(prefix, "lbt");
    store
        .create_tenant(t.clone(), "LB".into(), "s".into())
        .await
        .unwrap();
    let id = LeaderboardId::parse("xp-weekly").unwrap();
    let new = NewLeaderboard {
        leaderboard_id: id.clone(),
        tenant_id: t.clone(),
        name: "XP".into(),
        description: Some("weekly".into()),
        status: LeaderboardStatus::Active,
        config: serde_json::json!({
            "timeframe": {"type": "all_time"},
            "scoring": {"rules": [{"event_type": "match.*", "points_expression": "attrs.score"}]}
        }),
    };
    let lb = store.create_leaderboard(new.clone()).await.unwrap();
    assert_eq!(lb.version, 1);
    assert_eq!(lb.created_at, lb.updated_at);
    assert!(matches!(
        store.create_leaderboard(new.clone()).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .get_leaderboard(t.as_str(), "xp-weekly")
            .await
            .unwrap(),
        Some(lb.clone())
    );
    assert_eq!(
        store.list_leaderboards(Some(t.as_str())).await.unwrap(),
        vec![lb.clone()]
    );

    let patched = store
        .update_leaderboard(
            t.as_str(),
            "xp-weekly",
            LeaderboardPatch {
                status: Some(LeaderboardStatus::Inactive),
                description: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(patched.version, 2);
    assert_eq!(patched.status, LeaderboardStatus::Inactive);
    assert_eq!(patched.description, None);
    assert_eq!(patched.name, "XP");
    assert_eq!(
        store
            .leaderboard_status(t.as_str(), "xp-weekly")
            .await
            .unwrap(),
        Some(LeaderboardStatus::Inactive)
    );
    assert!(patched.updated_at >= lb.updated_at);

    let removed = store
        .delete_leaderboard(t.as_str(), "xp-weekly")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(removed, patched);
    assert!(
        store
            .get_leaderboard(t.as_str(), "xp-weekly")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .leaderboard_status(t.as_str(), "xp-weekly")
            .await
            .unwrap(),
        None
    );
    // A deleted id can be created again: version 1 and a new uid, so its windows never mix.
    let again = store.create_leaderboard(new).await.unwrap();
    assert_eq!(again.version, 1);
    assert_ne!(again.uid, lb.uid);
    assert!(
        store
            .update_leaderboard(t.as_str(), "missing", LeaderboardPatch::default())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .delete_leaderboard(t.as_str(), "missing")
            .await
            .unwrap()
            .is_none()
    );
}

/// A valid `match.completed` event of `user` scoring `score`.
pub fn event(id: &str, user: &str, score: f64) -> phoenix_core::event::Event {
    let now = Timestamp::now();
    phoenix_core::event::Event::from_json(
        &serde_json::json!({
            "event_id": id,
            "type": "match.completed",
            "actor": {"user_id": user},
            "occurred_at": now.to_string(),
            "attrs": {"score": score}
        }),
        phoenix_core::event::EventRules {
            now,
            dedupe_horizon: SignedDuration::from_hours(24),
        },
    )
    .expect("a valid test event")
}

/// Creates the all-time leaderboard `points` of tenant `t`: the sum of `attrs.score` of `match.*`
/// events (see [`event`]).
pub async fn points_board(store: &dyn Store, t: &TenantId) {
    store
        .create_leaderboard(NewLeaderboard {
            leaderboard_id: LeaderboardId::parse("points").unwrap(),
            tenant_id: t.clone(),
            name: "Points".into(),
            description: None,
            status: LeaderboardStatus::Active,
            config: serde_json::json!({
                "timeframe": {"type": "all_time"},
                "scoring": {"rules": [{"event_type": "match.*", "points_expression": "attrs.score"}]}
            }),
        })
        .await
        .unwrap();
}

pub async fn scoring(store: &dyn Store, prefix: &str) {
    use crate::IngestStatus::{Accepted, Duplicate};
    let t = tid(prefix, "score");
    store
        .create_tenant(t.clone(), "Scoring".into(), "s".into())
        .await
        .unwrap();
    points_board(store, &t).await;
    let batch = [
        event("e1", "ann", 10.0),
        event("e2", "ben", 30.0),
        event("e1", "ann", 10.0),
        event("e3", "ann", 5.0),
    ];
    let mut watcher = store
        .watch_leaderboard(t.as_str(), "points")
        .expect("the leaderboard exists");
    assert!(store.watch_leaderboard(t.as_str(), "missing").is_none());
    let before = watcher.borrow_and_update().version;
    let statuses = store.ingest(t.as_str(), batch.to_vec()).await.unwrap();
    assert!(
        watcher.has_changed().unwrap(),
        "an applied change signals watchers before the ingest returns"
    );
    assert!(watcher.borrow_and_update().version > before);
    assert_eq!(statuses, vec![Accepted, Accepted, Duplicate, Accepted]);
    let again = store.ingest(t.as_str(), batch[..2].to_vec()).await.unwrap();
    assert_eq!(again, vec![Duplicate, Duplicate]);

    let page = store
        .standings(t.as_str(), "points", None, crate::PageStart::Rank(1), 10)
        .await
        .unwrap()
        .expect("the leaderboard exists");
    assert_eq!(page.total_entries, 2);
    let rows: Vec<(u32, &str, f64)> = page
        .entries
        .iter()
        .map(|e| (e.rank, e.user_id.as_str(), e.score))
        .collect();
    assert_eq!(rows, vec![(1, "ben", 30.0), (2, "ann", 15.0)]);
    let ann = store
        .standing_of(t.as_str(), "points", None, "ann")
        .await
        .unwrap()
        .expect("ann is ranked");
    assert_eq!((ann.rank, ann.score), (2, 15.0));
    assert!(
        store
            .standing_of(t.as_str(), "points", None, "nobody")
            .await
            .unwrap()
            .is_none()
    );
    let around = |user: &str, radius: u32, count: u32| {
        let start = crate::PageStart::Around {
            user_id: user.into(),
            radius,
        };
        let store = &store;
        let t = t.as_str();
        async move {
            store
                .standings(t, "points", None, start, count)
                .await
                .unwrap()
                .expect("the leaderboard exists")
                .entries
                .iter()
                .map(|e| e.user_id.clone())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(around("ann", 5, 11).await, ["ben", "ann"]);
    assert_eq!(around("ben", 0, 1).await, ["ben"]);
    assert_eq!(around("ben", 1, 3).await, ["ben", "ann"]);
    assert_eq!(around("ann", 1, 1).await, ["ben"]);
    assert!(around("nobody", 5, 11).await.is_empty());
    assert!(
        store
            .standings(t.as_str(), "missing", None, crate::PageStart::Rank(1), 10)
            .await
            .unwrap()
            .is_none()
    );

    // Watchers learn when a board stops being live.
    store
        .create_leaderboard(NewLeaderboard {
            leaderboard_id: LeaderboardId::parse("watched").unwrap(),
            tenant_id: t.clone(),
            name: "Watched".into(),
            description: None,
            status: LeaderboardStatus::Active,
            config: serde_json::json!({
                "timeframe": {"type": "all_time"},
                "scoring": {"rules": [{"event_type": "*", "points_expression": "1"}]}
            }),
        })
        .await
        .unwrap();
    let mut watcher = store.watch_leaderboard(t.as_str(), "watched").unwrap();
    assert_eq!(watcher.borrow_and_update().state, crate::BoardState::Active);
    store
        .update_leaderboard(
            t.as_str(),
            "watched",
            LeaderboardPatch {
                status: Some(LeaderboardStatus::Inactive),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        watcher.borrow_and_update().state,
        crate::BoardState::Inactive
    );
    store
        .delete_leaderboard(t.as_str(), "watched")
        .await
        .unwrap();
    assert_eq!(
        watcher.borrow_and_update().state,
        crate::BoardState::Deleted
    );
}

/// An ADMIN always remains: the last one can be neither demoted nor deleted. Needs a store with no
/// other users (its own tests' fresh one).
pub async fn last_admin_remains(store: &dyn Store, prefix: &str) {
    let user = |name: &str| NewUser {
        username: format!("{prefix}-{name}"),
        role: Role::Admin,
        password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
    };
    let only = format!("{prefix}-only");
    store.create_user(user("only")).await.unwrap();
    let demote = UserPatch {
        role: Some(Role::Viewer),
        password_hash: None,
    };
    let refused = store.update_user(&only, demote.clone()).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    let refused = store.delete_user(&only).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    // A new password is not a demotion.
    store
        .update_user(
            &only,
            UserPatch {
                role: None,
                password_hash: Some("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into()),
            },
        )
        .await
        .unwrap();
    store.create_user(user("second")).await.unwrap();
    store.update_user(&only, demote).await.unwrap();
    let refused = store.delete_user(&format!("{prefix}-second")).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
}

/// For the tests of every backend and of the binaries that run against the machine's PostgreSQL
/// (`PHOENIX_TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`): a URL whose
/// connections work in a new, empty schema (`phx_test_<time>_<random>`, with `app` as their
/// `application_name`, so a test can find them), or `None` when there is no PostgreSQL here outside
/// CI (under `CI=true` that is a failure). Schemas left by runs more than an hour old are dropped.
pub async fn test_database(app: &str) -> Option<String> {
    let base = std::env::var("PHOENIX_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let pool = match sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_secs(3))
        .connect(&base)
        .await
    {
        Ok(pool) => pool,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("PostgreSQL at {base} is required under CI=true: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: no PostgreSQL at {base} ({e}); CI runs these tests");
            return None;
        }
    };
    // Named by the time it was made, so schemas that earlier runs left behind (a failed test keeps
    // its own for a look) are dropped an hour later.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let old: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'phx\\_test\\_%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for name in old {
        let made = name.split('_').nth(2).and_then(|t| t.parse::<u64>().ok());
        if made.is_some_and(|t| t + 3600 < now) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE"
            )))
            .execute(&pool)
            .await;
        }
    }
    let schema = format!("phx_test_{now}_{}", crate::seal::random_hex::<6>());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&pool)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!(
        "{base}{sep}options[search_path]={schema}&application_name={app}"
    ))
}
