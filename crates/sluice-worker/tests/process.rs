//! The `sluice-worker` binary as a process: invalid configurations, a crash mid-stream
//! (SIGKILL) losing nothing, and SIGTERM draining cleanly.

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::process::Command;

#[test]
fn an_invalid_configuration_exits_non_zero_naming_the_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("route.json");
    std::fs::write(
        &path,
        r#"{
          "tenant": "acme", "pipeline": "orders", "route": "r",
          "source": {"kind": "jetstream", "url": "nats://127.0.0.1:4222", "stream": "s",
                     "subject": "s.events", "durable": "bad.name"},
          "filter": "event.amount >",
          "sink": {"kind": "http", "url": "ftp://nowhere"},
          "deadLetter": {"url": "nats://127.0.0.1:4222", "subject": "s.dead"}
        }"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-worker"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for field in ["source.durable", "filter", "sink.url"] {
        assert!(stderr.contains(field), "{field} not named in: {stderr}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-worker"))
        .arg("--config")
        .arg(dir.path().join("missing.json"))
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_stream_loses_nothing() {
    let s = TestStream::new().await;
    let (_db, pg, url) = TestDb::new().await;
    let total = 20_000u64;
    let mut config = s.config(
        "crash",
        r#""projection": {"fields": [{"path": "id"}, {"path": "customer.id", "as": "customer"}]},"#,
        &format!(r#"{{"kind": "postgres", "url": "{url}", "table": "sink.orders"}}"#),
    );
    // Small batches, so the worker is mid-stream for a while.
    config.batching.max_events = 50;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &config);
    s.publish_all((0..total as usize).map(order)).await;

    let rows = || async {
        pg.query_one("SELECT count(*) FROM sink.orders", &[])
            .await
            .map(|r| r.get::<_, i64>(0) as u64)
            .unwrap_or(0)
    };
    let mut first = Process::start(&path);
    eventually("some rows written", || async { rows().await > 0 }).await;
    first.signal(Signal::SIGKILL);
    let status = first.wait();
    assert!(!status.success());
    let written = rows().await;
    assert!(written < total, "killed before the end ({written} rows)");

    let _second = Process::start(&path);
    let distinct = || async {
        pg.query_one(
            "SELECT count(DISTINCT (event->>'id')::bigint) FROM sink.orders",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0) as u64
    };
    eventually("every event arrived", || async {
        distinct().await == total
    })
    .await;
    let row = pg
        .query_one(
            "SELECT event FROM sink.orders WHERE event->>'id' = '7' LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    let event: serde_json::Value = row.get(0);
    assert_eq!(event, serde_json::json!({"id": 7, "customer": "c0"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_leaves_nothing_unacknowledged() {
    let s = TestStream::new().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let config = s.config(
        "drain",
        "",
        &format!(r#"{{"kind": "file", "path": "{}"}}"#, out.display()),
    );
    let path = write_config(dir.path(), &config);
    s.publish_all((0..20_000).map(order)).await;
    let mut p = Process::start(&path);
    let lines = || {
        std::fs::read_to_string(&out)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    eventually("some events written", || async { lines() > 0 }).await;
    p.signal(Signal::SIGTERM);
    let status = p.wait();
    assert!(
        status.success(),
        "exit {status:?}: {:?}",
        p.stderr.lock().unwrap()
    );
    let info = s.consumer_info("drain").await;
    assert_eq!(info.num_ack_pending, 0, "nothing waits for redelivery");
    assert_eq!(info.num_redelivered, 0);
    // Everything acknowledged was written, once.
    let text = std::fs::read_to_string(&out).unwrap();
    let ids: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let acked = info.ack_floor.stream_sequence;
    assert_eq!(ids.len() as u64, acked);
    assert_eq!(ids, (0..acked).collect::<Vec<_>>());
}
