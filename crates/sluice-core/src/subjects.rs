//! Broker names. Every subject and stream of a tenant is namespaced by the tenant, so that
//! routing, quotas and per-tenant broker credentials line up: tenant `acme`'s stream `orders`
//! is the JetStream stream `sluice_acme_orders` holding subjects `sluice.acme.orders.>`;
//! producers' events go to `sluice.acme.orders.events`. Tenant and stream names are DNS-1123
//! labels, which contain neither `.` nor `_`, so these names never collide.

/// Subject prefix of a tenant: `sluice.<tenant>`.
pub fn tenant_prefix(tenant: &str) -> String {
    format!("sluice.{tenant}")
}

/// All subjects of a stream: `sluice.<tenant>.<stream>.>`.
pub fn stream_subjects(tenant: &str, stream: &str) -> String {
    format!("sluice.{tenant}.{stream}.>")
}

/// The subject ingested events are published on: `sluice.<tenant>.<stream>.events`.
pub fn events_subject(tenant: &str, stream: &str) -> String {
    format!("sluice.{tenant}.{stream}.events")
}

/// The subject a pipeline's poison events go to when it names no dead-letter stream:
/// `sluice.<tenant>.<stream>.dead.<pipeline>`, kept in the source stream itself.
pub fn default_dead_letter_subject(tenant: &str, stream: &str, pipeline: &str) -> String {
    format!("sluice.{tenant}.{stream}.dead.{pipeline}")
}

/// The JetStream stream backing a Sluice stream: `sluice_<tenant>_<stream>`.
pub fn jetstream_name(tenant: &str, stream: &str) -> String {
    format!("sluice_{tenant}_{stream}")
}

/// The durable consumer of a route, shared by all its replicas: `<pipeline>_<sink>`.
pub fn durable_name(pipeline: &str, sink: &str) -> String {
    format!("{pipeline}_{sink}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_namespaced_by_tenant() {
        assert_eq!(stream_subjects("acme", "orders"), "sluice.acme.orders.>");
        assert_eq!(
            events_subject("acme", "orders"),
            "sluice.acme.orders.events"
        );
        assert_eq!(jetstream_name("acme", "orders"), "sluice_acme_orders");
        assert_eq!(durable_name("p", "s"), "p_s");
        assert!(
            default_dead_letter_subject("acme", "orders", "p").starts_with(&tenant_prefix("acme"))
        );
        // Hyphens cannot make two tenants' names meet.
        assert_ne!(jetstream_name("a-b", "c"), jetstream_name("a", "b-c"));
    }
}
