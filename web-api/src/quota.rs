//! Quotas at the door: what a tenant uses (from its Pipeline objects, counted exactly as the
//! operator counts them, with `sluice_crd::validate::pipeline_demand`) and whether a change fits.
//! Callers hold the tenant's lock ([`crate::AppState::lock_tenant`]: a [`Gates`] entry in this
//! process, then a [`crate::store::TenantLock`] lease in the store) from the check until the
//! write to Kubernetes is done, so two concurrent requests never both take the last free slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_core::quota::{self, Limits, Usage};
use sluice_crd::validate::pipeline_demand;
use sluice_crd::{Pipeline, PipelineSpec};
use utoipa::ToSchema;

use crate::problem::ApiError;
use crate::store::StoreError;

/// Per-tenant gates of this process: one quota-affecting write per tenant at a time proceeds
/// to the store's lease; the others wait here, in memory, for a bounded time.
#[derive(Debug, Default)]
pub struct Gates {
    gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Gates kept before unused ones are pruned.
const GATES_BEFORE_PRUNING: usize = 10_000;

impl Gates {
    /// Enters the tenant's gate, waiting at most `wait` ([`StoreError::Busy`] after).
    pub async fn enter(
        &self,
        tenant_id: &str,
        wait: Duration,
    ) -> Result<tokio::sync::OwnedMutexGuard<()>, StoreError> {
        let gate = {
            let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
            if gates.len() >= GATES_BEFORE_PRUNING {
                gates.retain(|_, g| Arc::strong_count(g) > 1);
            }
            gates.entry(tenant_id.to_string()).or_default().clone()
        };
        tokio::time::timeout(wait, gate.lock_owned())
            .await
            .map_err(|_| {
                StoreError::Busy(
                    "other changes of this tenant's quota-counted objects are in progress".into(),
                )
            })
    }
}

/// What the tenant's pipelines use, leaving out `except` (the pipeline being changed) and the
/// pipelines already being deleted.
pub fn usage_of(pipelines: &[Pipeline], tenant_suspended: bool, except: Option<&str>) -> Usage {
    pipelines
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| except.is_none() || p.metadata.name.as_deref() != except)
        .map(|p| pipeline_demand(&p.spec, tenant_suspended))
        .sum()
}

fn within(new: Usage, old: Usage) -> bool {
    new.pipelines <= old.pipelines
        && new.parallelism <= old.parallelism
        && new.cpu_millis <= old.cpu_millis
        && new.memory_bytes <= old.memory_bytes
}

/// Whether changing a pipeline from `old` (none for a create) to `new` fits: a change that asks
/// for no more than before always fits (so an over-quota tenant can still scale down).
pub fn check_change(
    limits: &Limits,
    used_by_others: Usage,
    old: Option<&PipelineSpec>,
    new: &PipelineSpec,
    tenant_suspended: bool,
) -> Result<(), ApiError> {
    let new_demand = pipeline_demand(new, tenant_suspended);
    if let Some(old) = old
        && within(new_demand, pipeline_demand(old, tenant_suspended))
    {
        return Ok(());
    }
    quota::check(limits, used_by_others, new_demand).map_err(ApiError::QuotaExceeded)
}

/// Use of a countable limit.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CountUse {
    /// In use.
    pub used: u64,
    /// The limit; absent when unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// Use of a quantity limit, as Kubernetes quantities.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuantityUse {
    /// In use, e.g. `1500m` or `512Mi`.
    pub used: String,
    /// The limit; absent when unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

/// Events and bytes ingested.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IngestCount {
    /// Events.
    pub events: i64,
    /// Bytes.
    pub bytes: i64,
}

impl std::ops::AddAssign for IngestCount {
    fn add_assign(&mut self, o: IngestCount) {
        self.events += o.events;
        self.bytes += o.bytes;
    }
}

/// What one stream ingested.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamIngest {
    /// The stream.
    pub stream: String,
    /// In the last hour (the current minute included).
    pub last_hour: IngestCount,
    /// Since metering began.
    pub total: IngestCount,
}

/// Metered ingest of a tenant: counted per minute by every API replica; the counts of the last
/// few seconds of other replicas reach the store within their flush interval.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngestUsage {
    /// All streams, in the last hour.
    pub last_hour: IngestCount,
    /// All streams, since metering began.
    pub total: IngestCount,
    /// Per stream, by name.
    pub streams: Vec<StreamIngest>,
}

/// A tenant's current use against each limit of its quota.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageView {
    /// Pipelines against `maxPipelines`.
    pub pipelines: CountUse,
    /// Streams against `maxStreams`.
    pub streams: CountUse,
    /// Worker replicas against `maxParallelism`.
    pub parallelism: CountUse,
    /// CPU requested by workers against `cpu`.
    pub cpu: QuantityUse,
    /// Memory requested by workers against `memory`.
    pub memory: QuantityUse,
    /// Whether the tenant is suspended (its pipelines then run no workers).
    pub suspended: bool,
    /// Events ingested through the API (metering).
    pub ingest: IngestUsage,
}

impl UsageView {
    /// Builds the view.
    pub fn new(limits: &Limits, usage: Usage, suspended: bool) -> Self {
        UsageView {
            pipelines: CountUse {
                used: usage.pipelines,
                limit: limits.max_pipelines,
            },
            streams: CountUse {
                used: usage.streams,
                limit: limits.max_streams,
            },
            parallelism: CountUse {
                used: usage.parallelism,
                limit: limits.max_parallelism,
            },
            cpu: QuantityUse {
                used: quota::format_cpu(usage.cpu_millis),
                limit: limits.cpu_millis.map(quota::format_cpu),
            },
            memory: QuantityUse {
                used: quota::format_memory(usage.memory_bytes),
                limit: limits.memory_bytes.map(quota::format_memory),
            },
            suspended,
            ingest: IngestUsage::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(parallelism: i32) -> PipelineSpec {
        serde_json::from_value(json!({"source": {"stream": "s"},
            "sinks": [{"name": "a", "file": {"stdout": true}}], "parallelism": parallelism}))
        .unwrap()
    }

    #[test]
    fn scaling_down_always_fits_and_scaling_up_is_checked() {
        let limits = Limits {
            max_parallelism: Some(2),
            ..Default::default()
        };
        let others = pipeline_demand(&spec(2), false);
        assert!(check_change(&limits, others, Some(&spec(3)), &spec(1), false).is_ok());
        let e = check_change(&limits, others, Some(&spec(1)), &spec(2), false).unwrap_err();
        assert!(matches!(e, ApiError::QuotaExceeded(x) if x.limit == quota::Limit::MaxParallelism));
        assert!(check_change(&limits, Usage::default(), None, &spec(2), false).is_ok());
    }
}
