//! The platform's limits on what a route may reach and spend, against a real NATS JetStream
//! and real HTTP receivers: destinations the egress policy denies and redirects are refused
//! (the events are dead-lettered with the reason, the receiver sees nothing), and events
//! whose evaluation would cost more than the budget are dead-lettered unevaluated.

mod common;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::post;
use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The dead letters of `s` once `durable` has settled `n` events: (stage, error) of each.
async fn settled_dead_letters(s: &TestStream, durable: &str, n: u64) -> Vec<(String, String)> {
    eventually("all acked", || async {
        let i = s.consumer_info(durable).await;
        i.num_pending == 0 && i.num_ack_pending == 0 && i.delivered.stream_sequence >= n
    })
    .await;
    s.read_subject(&s.dead())
        .await
        .iter()
        .map(|m| {
            let h = m.headers.as_ref().expect("dead letters carry headers");
            let get = |k: &str| h.get(k).map(|v| v.as_str().to_string()).unwrap_or_default();
            (get("Sluice-Stage"), get("Sluice-Error"))
        })
        .collect()
}

#[tokio::test]
async fn loopback_destinations_are_refused_without_the_platform_allowing_them() {
    let s = TestStream::new().await;
    let (rx, url) = Receiver::start().await;
    let port = url::Url::parse(&url).unwrap().port().unwrap();
    // By address, which no resolver sees, and by a name resolving to loopback.
    s.publish_all((0..5).map(order)).await;
    for (routes, (durable, url)) in [
        ("literal", url.clone()),
        ("named", format!("http://localhost:{port}/hook")),
    ]
    .into_iter()
    .enumerate()
    {
        let mut config = s.config(
            durable,
            "",
            &format!(r#"{{"kind": "http", "url": "{url}"}}"#),
        );
        config.sink_policy.allow_loopback = false;
        let w = InProcess::start(config).await;
        let dead = settled_dead_letters(&s, durable, 5).await;
        w.stop().await;
        // Each route dead-letters the five events.
        assert_eq!(dead.len(), 5 * (routes + 1), "{durable}: {dead:?}");
        assert!(
            dead.iter()
                .all(|(stage, e)| stage == "sink" && e.contains("loopback")),
            "{durable}: {dead:?}"
        );
    }
    assert_eq!(
        rx.requests.load(Ordering::SeqCst),
        0,
        "nothing reached the receiver"
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let s = TestStream::new().await;
    let (rx, target) = Receiver::start().await;
    let redirects = Arc::new(AtomicUsize::new(0));
    let counted = redirects.clone();
    let app = Router::new().route(
        "/hook",
        post(move || {
            let target = target.clone();
            counted.fetch_add(1, Ordering::SeqCst);
            async move { (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, target)]) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let config = s.config(
        "redirected",
        "",
        &format!(r#"{{"kind": "http", "url": "http://{addr}/hook"}}"#),
    );
    let w = InProcess::start(config).await;
    s.publish_all((0..5).map(order)).await;
    let dead = settled_dead_letters(&s, "redirected", 5).await;
    w.stop().await;
    assert_eq!(dead.len(), 5, "{dead:?}");
    assert!(
        dead.iter()
            .all(|(stage, e)| stage == "sink" && e.contains("redirects are not followed")),
        "{dead:?}"
    );
    assert!(redirects.load(Ordering::SeqCst) >= 1);
    assert_eq!(
        rx.requests.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
}

#[tokio::test]
async fn events_over_the_evaluation_budget_are_dead_lettered_with_the_reason() {
    let s = TestStream::new().await;
    let (rx, url) = Receiver::start().await;
    let mut config = s.config(
        "budget",
        r#""filter": "event.items.exists(a, event.items.exists(b, a == b + 1000000))","#,
        &format!(r#"{{"kind": "http", "url": "{url}"}}"#),
    );
    config.max_evaluation_cost = 50_000;
    let w = InProcess::start(config).await;
    let small = serde_json::json!({"items": (0..10).collect::<Vec<_>>()});
    let big = serde_json::json!({"items": (0..5_000).collect::<Vec<_>>()});
    s.publish_all([small.to_string().into_bytes(), big.to_string().into_bytes()])
        .await;
    let dead = settled_dead_letters(&s, "budget", 2).await;
    w.stop().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, "filter");
    assert!(dead[0].1.contains("over budget"), "{dead:?}");
    assert_eq!(rx.count(), 0, "the small event was filtered out");
}
