//! Quota arithmetic: what a pipeline asks for, what a tenant uses, and whether a request fits.
//! The API refuses over-quota requests with it and the operator refuses to run over-quota
//! pipelines with it, so both doors count the same way.

use std::fmt;

/// CPU a worker requests when its pipeline says nothing (millicores).
pub const DEFAULT_WORKER_CPU_MILLIS: u64 = 100;
/// Memory a worker requests when its pipeline says nothing (bytes).
pub const DEFAULT_WORKER_MEMORY_BYTES: u64 = 128 * 1024 * 1024;

/// Parses a Kubernetes CPU quantity (`250m`, `1`, `0.5`, `2k`) into millicores.
pub fn parse_cpu_millis(q: &str) -> Result<u64, String> {
    let q = q.trim();
    if let Some(m) = q.strip_suffix('m') {
        return m
            .parse::<u64>()
            .map_err(|_| format!("{q:?} is not a CPU quantity (e.g. 250m, 1, 0.5)"));
    }
    parse_decimal_with_suffix(q)
        .map(|v| (v * 1000.0).ceil() as u64)
        .ok_or_else(|| format!("{q:?} is not a CPU quantity (e.g. 250m, 1, 0.5)"))
}

/// Parses a Kubernetes memory quantity (`128Mi`, `1Gi`, `500M`, `1e9`, `1024`) into bytes.
pub fn parse_memory_bytes(q: &str) -> Result<u64, String> {
    let q = q.trim();
    const BINARY: [(&str, f64); 6] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
    ];
    for (suffix, factor) in BINARY {
        if let Some(n) = q.strip_suffix(suffix) {
            return n
                .parse::<f64>()
                .ok()
                .filter(|v| *v >= 0.0)
                .map(|v| (v * factor).ceil() as u64)
                .ok_or_else(|| format!("{q:?} is not a memory quantity (e.g. 128Mi, 1Gi)"));
        }
    }
    parse_decimal_with_suffix(q)
        .map(|v| v.ceil() as u64)
        .ok_or_else(|| format!("{q:?} is not a memory quantity (e.g. 128Mi, 1Gi)"))
}

fn parse_decimal_with_suffix(q: &str) -> Option<f64> {
    const DECIMAL: [(&str, f64); 6] = [
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (suffix, factor) in DECIMAL {
        if let Some(n) = q.strip_suffix(suffix) {
            return n
                .parse::<f64>()
                .ok()
                .filter(|v| *v >= 0.0)
                .map(|v| v * factor);
        }
    }
    q.parse::<f64>().ok().filter(|v| *v >= 0.0 && v.is_finite())
}

/// Formats millicores as a quantity (`1500m`, `2`).
pub fn format_cpu(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// Formats bytes as a quantity (`128Mi`, `1Gi`, `1000`).
pub fn format_memory(bytes: u64) -> String {
    for (suffix, factor) in [("Gi", 1u64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if bytes >= factor && bytes.is_multiple_of(factor) {
            return format!("{}{suffix}", bytes / factor);
        }
    }
    bytes.to_string()
}

/// A tenant's limits; `None` does not constrain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Most pipelines.
    pub max_pipelines: Option<u64>,
    /// Most streams.
    pub max_streams: Option<u64>,
    /// Most worker replicas over all routes of all pipelines.
    pub max_parallelism: Option<u64>,
    /// Most CPU requested by all workers (millicores).
    pub cpu_millis: Option<u64>,
    /// Most memory requested by all workers (bytes).
    pub memory_bytes: Option<u64>,
}

/// What something uses or asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Pipelines.
    pub pipelines: u64,
    /// Streams.
    pub streams: u64,
    /// Worker replicas.
    pub parallelism: u64,
    /// CPU requested (millicores).
    pub cpu_millis: u64,
    /// Memory requested (bytes).
    pub memory_bytes: u64,
}

impl std::ops::Add for Usage {
    type Output = Usage;
    fn add(self, o: Usage) -> Usage {
        Usage {
            pipelines: self.pipelines + o.pipelines,
            streams: self.streams + o.streams,
            parallelism: self.parallelism + o.parallelism,
            cpu_millis: self.cpu_millis + o.cpu_millis,
            memory_bytes: self.memory_bytes + o.memory_bytes,
        }
    }
}

impl std::iter::Sum for Usage {
    fn sum<I: Iterator<Item = Usage>>(iter: I) -> Usage {
        iter.fold(Usage::default(), |a, b| a + b)
    }
}

/// What one pipeline asks for: one pipeline, `routes × replicas` workers, each requesting
/// `cpu_millis` and `memory_bytes`. A suspended pipeline still counts as a pipeline but runs
/// no workers.
pub fn pipeline_demand(
    routes: u64,
    replicas: u64,
    suspended: bool,
    cpu_millis: u64,
    memory_bytes: u64,
) -> Usage {
    let workers = if suspended { 0 } else { routes * replicas };
    Usage {
        pipelines: 1,
        streams: 0,
        parallelism: workers,
        cpu_millis: workers * cpu_millis,
        memory_bytes: workers * memory_bytes,
    }
}

/// The limit a request would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `maxPipelines`.
    MaxPipelines,
    /// `maxStreams`.
    MaxStreams,
    /// `maxParallelism`.
    MaxParallelism,
    /// `cpu`.
    Cpu,
    /// `memory`.
    Memory,
}

impl Limit {
    /// The quota field's name, as in the Tenant spec (`maxPipelines`, ...).
    pub fn field(self) -> &'static str {
        match self {
            Limit::MaxPipelines => "maxPipelines",
            Limit::MaxStreams => "maxStreams",
            Limit::MaxParallelism => "maxParallelism",
            Limit::Cpu => "cpu",
            Limit::Memory => "memory",
        }
    }

    fn format(self, v: u64) -> String {
        match self {
            Limit::Cpu => format_cpu(v),
            Limit::Memory => format_memory(v),
            _ => v.to_string(),
        }
    }
}

/// A request that does not fit, with the figures to explain why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    /// The limit.
    pub limit: Limit,
    /// Its value.
    pub max: u64,
    /// What is used without the request.
    pub used: u64,
    /// What the request adds.
    pub requested: u64,
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = self.limit;
        write!(
            f,
            "quota {} is {}: {} in use, {} requested",
            l.field(),
            l.format(self.max),
            l.format(self.used),
            l.format(self.requested)
        )
    }
}

/// Whether `request` fits in `limits` next to `used`; the first limit it breaks otherwise, in a
/// fixed order (pipelines, streams, parallelism, cpu, memory).
pub fn check(limits: &Limits, used: Usage, request: Usage) -> Result<(), Exceeded> {
    let checks = [
        (
            Limit::MaxPipelines,
            limits.max_pipelines,
            used.pipelines,
            request.pipelines,
        ),
        (
            Limit::MaxStreams,
            limits.max_streams,
            used.streams,
            request.streams,
        ),
        (
            Limit::MaxParallelism,
            limits.max_parallelism,
            used.parallelism,
            request.parallelism,
        ),
        (
            Limit::Cpu,
            limits.cpu_millis,
            used.cpu_millis,
            request.cpu_millis,
        ),
        (
            Limit::Memory,
            limits.memory_bytes,
            used.memory_bytes,
            request.memory_bytes,
        ),
    ];
    for (limit, max, used, requested) in checks {
        if let Some(max) = max
            && requested > 0
            && used + requested > max
        {
            return Err(Exceeded {
                limit,
                max,
                used,
                requested,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_cpu_millis("250m"), Ok(250));
        assert_eq!(parse_cpu_millis("1"), Ok(1000));
        assert_eq!(parse_cpu_millis("0.5"), Ok(500));
        assert!(parse_cpu_millis("lots").is_err());
        assert_eq!(parse_memory_bytes("128Mi"), Ok(128 << 20));
        assert_eq!(parse_memory_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(parse_memory_bytes("1024"), Ok(1024));
        assert!(parse_memory_bytes("-1Mi").is_err());
        assert_eq!(format_cpu(1500), "1500m");
        assert_eq!(format_cpu(2000), "2");
        assert_eq!(format_memory(128 << 20), "128Mi");
    }

    #[test]
    fn demand_counts_every_route_replica() {
        let d = pipeline_demand(3, 2, false, 100, 1 << 20);
        assert_eq!((d.pipelines, d.parallelism, d.cpu_millis), (1, 6, 600));
        let s = pipeline_demand(3, 2, true, 100, 1 << 20);
        assert_eq!((s.pipelines, s.parallelism, s.cpu_millis), (1, 0, 0));
    }

    #[test]
    fn check_names_the_first_broken_limit() {
        let limits = Limits {
            max_pipelines: Some(2),
            max_parallelism: Some(4),
            cpu_millis: Some(1000),
            ..Default::default()
        };
        let used = Usage {
            pipelines: 1,
            parallelism: 3,
            cpu_millis: 300,
            ..Default::default()
        };
        assert!(check(&limits, used, pipeline_demand(1, 1, false, 100, 0)).is_ok());
        let e = check(&limits, used, pipeline_demand(1, 2, false, 100, 0)).unwrap_err();
        assert_eq!(e.limit, Limit::MaxParallelism);
        assert_eq!(
            e.to_string(),
            "quota maxParallelism is 4: 3 in use, 2 requested"
        );
        let full = Usage {
            pipelines: 2,
            ..used
        };
        let e = check(&limits, full, pipeline_demand(1, 0, false, 0, 0)).unwrap_err();
        assert_eq!(e.limit, Limit::MaxPipelines);
        // Unset limits never constrain; a request of nothing always fits.
        assert!(check(&Limits::default(), full, pipeline_demand(9, 9, false, 9, 9)).is_ok());
        let e = check(&limits, used, pipeline_demand(1, 1, false, 800, 0)).unwrap_err();
        assert_eq!(e.to_string(), "quota cpu is 1: 300m in use, 800m requested");
    }
}
