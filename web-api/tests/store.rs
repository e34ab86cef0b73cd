//! The store's tests, run on both PostgreSQL and SQLite.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Db, TestDb};
use sluice_api::store::{
    AuditFilter, Idempotency, NewAudit, NewToken, Store, StoreError, TenantRow,
};

/// Declares a test running `$body(store)` on PostgreSQL and on SQLite.
macro_rules! both {
    ($name:ident, $body:ident) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let db = TestDb::new(Db::Postgres).await;
                $body(db.store.clone()).await;
                db.store.close().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = TestDb::new(Db::Sqlite).await;
                $body(db.store.clone()).await;
                db.store.close().await;
            }
        }
    };
}

fn tenant(name: &str) -> TenantRow {
    TenantRow {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.into(),
        created_at: 1_000,
        created_by: "test".into(),
    }
}

async fn registry(store: Store) {
    for n in ["beta", "acme", "gamma"] {
        store.insert_tenant(&tenant(n)).await.unwrap();
    }
    assert!(matches!(
        store.insert_tenant(&tenant("acme")).await,
        Err(StoreError::Duplicate)
    ));
    let page: Vec<String> = store
        .list_tenants(None, 2)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(page, ["acme", "beta"]);
    let rest: Vec<String> = store
        .list_tenants(Some("beta"), 2)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(rest, ["gamma"]);
    let acme = store
        .tenant_by_name(&sluice_api::TenantName::parse("acme").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(store.delete_tenant(&acme.id).await.unwrap());
    assert_eq!(
        store
            .tenant_by_name(&sluice_api::TenantName::parse("acme").unwrap())
            .await
            .unwrap(),
        None
    );
    // Migrations are idempotent.
    store.migrate().await.unwrap();
}
both!(registry_insert_list_delete, registry);

async fn tokens(store: Store) {
    let acme = tenant("acme");
    let beta = tenant("beta");
    store.insert_tenant(&acme).await.unwrap();
    store.insert_tenant(&beta).await.unwrap();
    fn new<'a>(id: &'a str, t: &'a str, name: &'a str) -> NewToken<'a> {
        NewToken {
            id,
            tenant_id: Some(t),
            name,
            role: "developer",
            token_hash: "abc",
            created_at: 1,
            created_by: "test",
            expires_at: 10_000,
            description: None,
        }
    }
    let (a, b) = (acme.id.as_str(), beta.id.as_str());
    store.insert_token(&new("t1", a, "ci")).await.unwrap();
    store.insert_token(&new("t2", a, "dev")).await.unwrap();
    store.insert_token(&new("t3", b, "ci")).await.unwrap();
    // Names are unique per tenant, not globally.
    assert!(matches!(
        store.insert_token(&new("t4", a, "ci")).await,
        Err(StoreError::Duplicate)
    ));
    // Platform tokens: unique by name too.
    let platform = NewToken {
        tenant_id: None,
        ..new("p1", a, "root")
    };
    store.insert_token(&platform).await.unwrap();
    assert!(matches!(
        store
            .insert_token(&NewToken {
                id: "p2",
                ..platform.clone()
            })
            .await,
        Err(StoreError::Duplicate)
    ));
    // Platform tokens are listed and revoked apart from tenant tokens; dead ones can go.
    let platform_ids: Vec<String> = store
        .list_platform_tokens(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(platform_ids, ["p1"]);
    assert!(
        store
            .revoke_platform_token("t1", 5)
            .await
            .unwrap()
            .is_none()
    );
    assert!(!store.delete_dead_platform_token("root", 5).await.unwrap());
    let revoked = store.revoke_platform_token("p1", 5).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(5));
    assert!(store.delete_dead_platform_token("root", 5).await.unwrap());
    assert!(store.token("p1").await.unwrap().is_none());

    let listed: Vec<String> = store
        .list_tokens(a, None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(listed, ["t1", "t2"]);
    assert_eq!(store.list_tokens(a, Some("t1"), 10).await.unwrap().len(), 1);
    let t1 = store.token("t1").await.unwrap().unwrap();
    assert_eq!(t1.tenant_name.as_deref(), Some("acme"));
    assert_eq!(t1.revoked_at, None);

    // Another tenant cannot revoke it.
    assert_eq!(store.revoke_token(b, "t1", 5).await.unwrap(), None);
    assert_eq!(store.token("t1").await.unwrap().unwrap().revoked_at, None);
    let revoked = store.revoke_token(a, "t1", 5).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(5));

    store.touch_token("t2", 77).await.unwrap();
    assert_eq!(
        store.token("t2").await.unwrap().unwrap().last_used_at,
        Some(77)
    );

    // Deleting a tenant removes its tokens.
    store.delete_tenant(a).await.unwrap();
    assert_eq!(store.token("t2").await.unwrap(), None);
    assert!(store.token("t3").await.unwrap().is_some());
}
both!(tokens_are_scoped_to_their_tenant, tokens);

async fn audit(store: Store) {
    for (i, (actor, tenant)) in [
        ("token:a", Some("acme")),
        ("token:b", Some("beta")),
        ("token:a", Some("acme")),
        ("oidc:root", None),
    ]
    .into_iter()
    .enumerate()
    {
        store
            .insert_audit(&NewAudit {
                at: 1_000 * (i as i64 + 1),
                actor: actor.into(),
                tenant: tenant.map(str::to_string),
                action: "pipeline.create".into(),
                object: format!("pipelines/p{i}"),
                source: Some("127.0.0.1".into()),
                status: 201,
                outcome: "success".into(),
            })
            .await
            .unwrap();
    }
    let all = store
        .list_audit(&AuditFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 4);
    assert!(all[0].id > all[3].id, "newest first");
    let acme = store
        .list_audit(&AuditFilter {
            tenant: Some("acme".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(acme.len(), 2);
    assert!(
        acme.iter()
            .all(|a| a.entry.tenant.as_deref() == Some("acme"))
    );
    let by_actor_and_time = store
        .list_audit(&AuditFilter {
            actor: Some("token:a".into()),
            since: Some(2_000),
            until: Some(4_000),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_actor_and_time.len(), 1);
    assert_eq!(by_actor_and_time[0].entry.at, 3_000);
    let page2 = store
        .list_audit(&AuditFilter {
            before_id: Some(all[1].id),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page2.len(), 2);
}
both!(audit_log_filters, audit);

async fn idempotency(store: Store) {
    let now = 1_000_000_000;
    assert_eq!(
        store.idempotency_begin("t", "k1", "h1", now).await.unwrap(),
        Idempotency::Fresh
    );
    assert_eq!(
        store.idempotency_begin("t", "k1", "h1", now).await.unwrap(),
        Idempotency::InProgress
    );
    store
        .idempotency_finish("t", "k1", 201, "{\"ok\":true}")
        .await
        .unwrap();
    assert_eq!(
        store.idempotency_begin("t", "k1", "h1", now).await.unwrap(),
        Idempotency::Replay {
            status: 201,
            body: "{\"ok\":true}".into()
        }
    );
    assert_eq!(
        store.idempotency_begin("t", "k1", "h2", now).await.unwrap(),
        Idempotency::Mismatch
    );
    // Keys are per scope.
    assert_eq!(
        store.idempotency_begin("u", "k1", "h2", now).await.unwrap(),
        Idempotency::Fresh
    );
    // An aborted claim can be claimed again.
    store.idempotency_abort("u", "k1").await.unwrap();
    assert_eq!(
        store.idempotency_begin("u", "k1", "h2", now).await.unwrap(),
        Idempotency::Fresh
    );
    // Expired keys are forgotten.
    let later = now + sluice_api::store::IDEMPOTENCY_TTL_MS + 1;
    assert_eq!(
        store
            .idempotency_begin("t", "k1", "h2", later)
            .await
            .unwrap(),
        Idempotency::Fresh
    );
}
both!(idempotency_keys, idempotency);

const LEASE: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(10);

async fn lock(store: Store) {
    let t = tenant("acme");
    store.insert_tenant(&t).await.unwrap();
    let held = store.lock_tenant(&t.id, LEASE, WAIT).await.unwrap();
    let released = Arc::new(AtomicBool::new(false));
    let waiter = {
        let (store, id, released) = (store.clone(), t.id.clone(), released.clone());
        tokio::spawn(async move {
            let l = store.lock_tenant(&id, LEASE, WAIT).await.unwrap();
            // The second holder only gets the lock after the first let it go.
            let after_release = released.load(Ordering::SeqCst);
            l.release().await.unwrap();
            after_release
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the lock must be exclusive");
    released.store(true, Ordering::SeqCst);
    held.release().await.unwrap();
    assert!(waiter.await.unwrap());
    assert!(matches!(
        store.lock_tenant("no-such-id", LEASE, WAIT).await,
        Err(StoreError::NotFound)
    ));
    // A held lease makes a short wait fail with Busy, not hang.
    let held = store.lock_tenant(&t.id, LEASE, WAIT).await.unwrap();
    let busy = store
        .lock_tenant(&t.id, LEASE, Duration::from_millis(200))
        .await;
    assert!(matches!(&busy, Err(e) if e.is_busy()), "{busy:?}");
    // A lease dropped without release (a cancelled request) is freed in the background.
    drop(held);
    store
        .lock_tenant(&t.id, LEASE, Duration::from_secs(5))
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    // A lease left by a crashed holder expires by itself.
    let crashed = store
        .lock_tenant(&t.id, Duration::from_millis(300), WAIT)
        .await
        .unwrap();
    std::mem::forget(crashed);
    let started = std::time::Instant::now();
    store
        .lock_tenant(&t.id, LEASE, WAIT)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}
both!(tenant_lock_is_exclusive, lock);
