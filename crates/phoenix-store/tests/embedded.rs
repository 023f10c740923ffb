//! The embedded backend against the conformance suite, plus what only it promises: persistence across
//! reopen, the data-dir lock, and the master-key check.

use phoenix_store::embedded::OpenError;
use phoenix_store::{EmbeddedStore, MasterKey, Store, conformance};

fn key() -> MasterKey {
    MasterKey::from_hex(&"ab".repeat(32)).unwrap()
}

#[tokio::test]
async fn embedded_store_passes_conformance_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let store = EmbeddedStore::open_initialized(dir.path(), key())
            .await
            .unwrap();
        conformance::run_all(&store, "emb").await;
        (
            store.list_tenants().await.unwrap(),
            store.list_api_keys().await.unwrap(),
            store.list_leaderboards(None).await.unwrap(),
            store
                .standings("emb-score", "points", None, 1, 10)
                .await
                .unwrap()
                .unwrap(),
            store
                .tenant_secrets("emb-t1")
                .await
                .unwrap()
                .unwrap()
                .current,
        )
    };
    let store = EmbeddedStore::open_initialized(dir.path(), key())
        .await
        .unwrap();
    assert_eq!(store.list_tenants().await.unwrap(), before.0);
    assert_eq!(store.list_api_keys().await.unwrap(), before.1);
    let lbs = store.list_leaderboards(None).await.unwrap();
    assert_eq!(lbs, before.2);
    assert_eq!(lbs[0].uid, before.2[0].uid);
    assert_eq!(
        store
            .tenant_secrets("emb-t1")
            .await
            .unwrap()
            .unwrap()
            .current,
        before.4
    );
    // Standings are rebuilt from the log exactly, and ids stay deduplicated.
    assert_eq!(
        store
            .standings("emb-score", "points", None, 1, 10)
            .await
            .unwrap()
            .unwrap(),
        before.3
    );
    // Secrets are sealed: the plaintext never reaches the disk.
    let log = std::fs::read(dir.path().join("wal.log")).unwrap();
    let needle = b"pk_emb_conformance_key";
    assert!(!log.windows(needle.len()).any(|w| w == needle));
}

#[tokio::test]
async fn a_second_opener_is_refused_and_a_wrong_key_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_initialized(dir.path(), key())
        .await
        .unwrap();
    match EmbeddedStore::open(dir.path(), key()) {
        Err(OpenError::Locked(_)) => {}
        other => panic!("expected Locked, got {:?}", other.err()),
    }
    drop(store);
    let other = MasterKey::from_hex(&"cd".repeat(32)).unwrap();
    match EmbeddedStore::open(dir.path(), other) {
        Err(OpenError::WrongMasterKey) => {}
        other => panic!("expected WrongMasterKey, got {:?}", other.err()),
    }
}
