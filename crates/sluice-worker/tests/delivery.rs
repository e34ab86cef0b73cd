//! The worker against a real NATS JetStream, a real HTTP receiver, PostgreSQL and a local
//! object store directory: transforms, dead letters, retries, backpressure, replicas.

mod common;

use common::*;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[tokio::test]
async fn filter_and_projection_results_reach_the_http_sink() {
    let s = TestStream::new().await;
    let (rx, url) = Receiver::start().await;
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "Bearer s3cret\n").unwrap();
    let config = s.config(
        "filter_projection",
        r#""filter": "event.amount >= 100",
           "projection": {"fields": [{"path": "id"}, {"path": "customer.id", "as": "customerId"}, {"path": "amount"}]},"#,
        &format!(
            r#"{{"kind": "http", "url": "{url}", "authorizationFile": "{}"}}"#,
            token.path().display()
        ),
    );
    let w = InProcess::start(config).await;
    s.publish_all((0..400).map(order)).await;
    // 0..400 with amount = i % 200: exactly half have amount >= 100.
    eventually("200 events delivered", || async { rx.count() >= 200 }).await;
    eventually("all acked", || async {
        let i = s.consumer_info("filter_projection").await;
        i.num_pending == 0 && i.num_ack_pending == 0
    })
    .await;
    let events = rx.events.lock().unwrap().clone();
    assert_eq!(events.len(), 200);
    for e in &events {
        let id = e["id"].as_u64().unwrap() as usize;
        assert_eq!(
            *e,
            serde_json::json!({"id": id, "customerId": format!("c{}", id % 7), "amount": id % 200})
        );
        assert!(id % 200 >= 100);
    }
    assert!(
        rx.authorization
            .lock()
            .unwrap()
            .iter()
            .all(|a| a == "Bearer s3cret")
    );
    assert_eq!(w.metric("events_in_total", None).await, 400.0);
    assert_eq!(w.metric("events_filtered_total", None).await, 200.0);
    assert_eq!(w.metric("events_out_total", None).await, 200.0);
    let ready = reqwest::get(format!("http://{}/readyz", w.metrics))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    w.stop().await;
}

#[tokio::test]
async fn bad_json_and_failing_expressions_go_to_the_dead_letter_subject() {
    let s = TestStream::new().await;
    let (rx, url) = Receiver::start().await;
    let config = s.config(
        "dead",
        r#""filter": "event.amount > 10",
           "projection": {"expression": "{'id': event.id, 'ratio': 100 / event.divisor}"},"#,
        &format!(r#"{{"kind": "http", "url": "{url}"}}"#),
    );
    let w = InProcess::start(config).await;
    s.publish_all([
        br#"{"id": 1, "amount": 50, "divisor": 4}"#.to_vec(), // delivered
        b"{not json".to_vec(),                                // decode
        br#"{"id": 3, "divisor": 4}"#.to_vec(),               // filter: no amount
        br#"{"id": 4, "amount": 50, "divisor": 0}"#.to_vec(), // projection: division by zero
        br#"{"id": 5, "amount": 5, "divisor": 1}"#.to_vec(),  // filtered out
    ])
    .await;
    eventually("everything acked", || async {
        let i = s.consumer_info("dead").await;
        i.num_pending == 0 && i.num_ack_pending == 0 && i.delivered.stream_sequence >= 5
    })
    .await;
    assert_eq!(
        *rx.events.lock().unwrap(),
        vec![serde_json::json!({"id": 1, "ratio": 25})]
    );
    let dead = s.read_subject(&s.dead()).await;
    assert_eq!(dead.len(), 3);
    let stage = |m: &async_nats::jetstream::Message, h: &str| {
        m.headers
            .as_ref()
            .unwrap()
            .get(h)
            .unwrap()
            .as_str()
            .to_owned()
    };
    let stages: Vec<String> = dead.iter().map(|m| stage(m, "Sluice-Stage")).collect();
    assert_eq!(stages, ["decode", "filter", "projection"]);
    assert_eq!(
        &dead[0].payload[..],
        b"{not json",
        "the original event is kept"
    );
    assert_eq!(stage(&dead[0], "Sluice-Original-Sequence"), "2");
    assert_eq!(stage(&dead[0], "Sluice-Original-Subject"), s.events());
    assert_eq!(stage(&dead[0], "Sluice-Original-Stream"), s.name);
    assert_eq!(stage(&dead[0], "Sluice-Pipeline"), "orders");
    assert_eq!(stage(&dead[0], "Sluice-Route"), format!("r-{}", s.id));
    assert!(stage(&dead[1], "Sluice-Error").contains("amount"));
    assert_eq!(w.metric("events_dead_lettered_total", None).await, 3.0);
    assert_eq!(
        w.metric("events_dead_lettered_total", Some("stage=\"decode\""))
            .await,
        1.0
    );
    w.stop().await;
}

#[tokio::test]
async fn http_client_errors_dead_letter_the_batch() {
    let s = TestStream::new().await;
    let (rx, url) = Receiver::start().await;
    rx.status.store(422, Ordering::SeqCst);
    let config = s.config(
        "refused",
        "",
        &format!(r#"{{"kind": "http", "url": "{url}"}}"#),
    );
    let w = InProcess::start(config).await;
    s.publish_all((0..10).map(order)).await;
    eventually("all acked", || async {
        let i = s.consumer_info("refused").await;
        i.num_pending == 0 && i.num_ack_pending == 0 && i.delivered.stream_sequence >= 10
    })
    .await;
    let dead = s.read_subject(&s.dead()).await;
    assert_eq!(dead.len(), 10);
    assert!(dead.iter().all(|m| {
        m.headers
            .as_ref()
            .unwrap()
            .get("Sluice-Stage")
            .unwrap()
            .as_str()
            == "sink"
    }));
    assert!(
        w.metric("sink_errors_total", Some("kind=\"rejected\""))
            .await
            >= 1.0
    );
    w.stop().await;
}

#[tokio::test]
async fn a_sink_that_is_down_then_recovers_gets_every_event() {
    let s = TestStream::new().await;
    let (rx, url) = Receiver::start().await;
    rx.fail_first.store(5, Ordering::SeqCst);
    let config = s.config(
        "recovers",
        "",
        &format!(r#"{{"kind": "http", "url": "{url}"}}"#),
    );
    let w = InProcess::start(config).await;
    s.publish_all((0..300).map(order)).await;
    eventually("every event delivered", || async { rx.ids().len() == 300 }).await;
    assert!(rx.requests.load(Ordering::SeqCst) > 5);
    assert!(
        w.metric("sink_errors_total", Some("kind=\"transient\""))
            .await
            >= 5.0
    );
    assert_eq!(w.metric("events_dead_lettered_total", None).await, 0.0);
    w.stop().await;
}

#[tokio::test]
async fn a_stalled_sink_bounds_what_the_worker_holds() {
    let s = TestStream::new().await;
    let (rx, url) = Receiver::start().await;
    rx.status.store(503, Ordering::SeqCst);
    // maxAckPending stays at its default (10000): the bound must come from the worker.
    let mut config = s.config(
        "stalled",
        "",
        &format!(r#"{{"kind": "http", "url": "{url}"}}"#),
    );
    config.batching.max_events = 10;
    let limits = sluice_worker::batch::Limits::for_route(&config);
    let bound = limits.max_in_flight() as u64;
    assert!(bound < 100, "{bound}");
    s.publish_all((0..2000).map(order)).await;
    let w = InProcess::start(config).await;
    eventually("the sink is retried", || async {
        rx.requests.load(Ordering::SeqCst) >= 5
    })
    .await;
    for _ in 0..10 {
        let i = s.consumer_info("stalled").await;
        assert!(
            i.num_ack_pending <= bound as usize,
            "{} unacked > bound {bound}",
            i.num_ack_pending
        );
        assert!(i.num_pending >= 2000 - bound, "{} pending", i.num_pending);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rx.count(), 0);
    // The sink comes back: everything flows.
    rx.status.store(200, Ordering::SeqCst);
    eventually("every event delivered", || async { rx.ids().len() == 2000 }).await;
    w.stop().await;
}

#[tokio::test]
async fn two_replicas_split_the_work_without_loss() {
    let s = TestStream::new().await;
    let sink = format!(
        r#"{{"kind": "jetstream", "url": "{}", "subject": "{}"}}"#,
        nats_url(),
        s.out()
    );
    let config = s.config("shared", "", &sink);
    let a = InProcess::start(config.clone()).await;
    let b = InProcess::start(config).await;
    s.publish_all((0..5000).map(order)).await;
    eventually("all acked", || async {
        let i = s.consumer_info("shared").await;
        i.num_pending == 0 && i.num_ack_pending == 0 && i.delivered.stream_sequence >= 5000
    })
    .await;
    let out = s.read_subject(&s.out()).await;
    let ids: std::collections::BTreeSet<u64> = out
        .iter()
        .map(|m| {
            serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 5000, "every event arrived");
    let (na, nb) = (
        a.metric("events_out_total", None).await,
        b.metric("events_out_total", None).await,
    );
    assert!(na > 0.0 && nb > 0.0, "both replicas worked: {na} + {nb}");
    assert!(na + nb >= 5000.0);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn object_store_sink_writes_gzip_ndjson_files() {
    use std::io::Read;
    let s = TestStream::new().await;
    let dir = tempfile::tempdir().unwrap();
    let sink = format!(
        r#"{{"kind": "objectStore", "url": "file://{}/bucket", "prefix": "orders/"}}"#,
        dir.path().display()
    );
    let config = s.config("objects", "", &sink);
    let w = InProcess::start(config).await;
    s.publish_all((0..250).map(order)).await;
    eventually("all acked", || async {
        let i = s.consumer_info("objects").await;
        i.num_pending == 0 && i.num_ack_pending == 0 && i.delivered.stream_sequence >= 250
    })
    .await;
    w.stop().await;
    let mut ids = std::collections::BTreeSet::new();
    let mut files = vec![dir.path().join("bucket/orders")];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        assert!(
            p.to_string_lossy().ends_with(".ndjson.gz"),
            "{}",
            p.display()
        );
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&p).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            ids.insert(v["id"].as_u64().unwrap());
        }
    }
    assert_eq!(ids.len(), 250);
}

#[tokio::test]
async fn nats_sink_publishes_each_event() {
    let s = TestStream::new().await;
    let subject = format!("out.{}", s.id);
    let mut sub = s.client.subscribe(subject.clone()).await.unwrap();
    s.client.flush().await.unwrap();
    let sink = format!(
        r#"{{"kind": "nats", "url": "{}", "subject": "{subject}"}}"#,
        nats_url()
    );
    let config = s.config(
        "core",
        r#""projection": {"fields": [{"path": "id"}]},"#,
        &sink,
    );
    let w = InProcess::start(config).await;
    s.publish_all((0..50).map(order)).await;
    let mut got = vec![];
    while got.len() < 50 {
        let m = tokio::time::timeout(Duration::from_secs(30), futures::StreamExt::next(&mut sub))
            .await
            .expect("events arrive")
            .unwrap();
        got.push(serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap());
    }
    assert_eq!(got[0], serde_json::json!({"id": 0}));
    w.stop().await;
}

#[tokio::test]
async fn start_from_new_skips_earlier_events() {
    let s = TestStream::new().await;
    let (rx, url) = Receiver::start().await;
    s.publish_all((0..20).map(order)).await;
    let mut config = s.config("new", "", &format!(r#"{{"kind": "http", "url": "{url}"}}"#));
    let sluice_core::route::Source::Jetstream { start_from, .. } = &mut config.source else {
        panic!("a JetStream source");
    };
    *start_from = sluice_core::route::StartFrom::New;
    let w = InProcess::start(config).await;
    eventually("the consumer exists", || async {
        s.stream
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>("new")
            .await
            .is_ok()
    })
    .await;
    s.publish_all((100..110).map(order)).await;
    eventually("new events delivered", || async { rx.count() >= 10 }).await;
    assert_eq!(rx.ids(), (100..110).collect());
    w.stop().await;
}
