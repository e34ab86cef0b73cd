//! Sluice's data plane. One worker process serves one route of a pipeline: it pulls events
//! from the route's source (a JetStream durable consumer shared by every replica of the
//! route), keeps those matching the CEL filter, reshapes them with the projection and delivers
//! them in batches to the route's sink. The source is acknowledged only after the sink
//! accepted a batch (at least once); poison events, and events whose delivery failed
//! `retry.maxDeliver` times, go to the dead-letter subject with the error attached; buffers
//! are bounded so that a slow sink slows consumption; the messages a worker holds are kept
//! alive with in-progress acknowledgements under a short ack wait, so a killed worker's
//! messages are redelivered within seconds.
//!
//! The binary `sluice-worker` is a thin shell over [`worker::run`].

pub mod backoff;
pub mod batch;
pub mod config;
pub mod dead_letter;
pub mod health;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod sink;
pub mod source;
pub mod timing;
pub mod transform;
pub mod worker;

pub use worker::{RunOptions, WorkerError, run};
