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

/// Checks the subject of a NATS sink, as the tenant writes it (relative to its subject space
/// `sluice.<tenant>.`), given the pipeline's source stream. Refused: subjects that are not
/// plain NATS subjects (empty tokens, whitespace, wildcards `*` and `>`); subjects that look
/// like the platform's or the server's own (`sluice.…`, `$…` such as `$JS.API`, `_INBOX.…`);
/// and subjects in the source stream (`<stream>` or `<stream>.…`, which includes its events
/// subject), whose output would be fed back into the pipeline's input.
pub fn check_sink_subject(subject: &str, source_stream: &str) -> Result<(), String> {
    if subject.is_empty() {
        return Err("must not be empty".into());
    }
    if subject
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '*' || c == '>')
    {
        return Err("must be a NATS subject without wildcards (*, >) or whitespace".into());
    }
    if subject.split('.').any(str::is_empty) {
        return Err("must be dot-separated tokens with no empty token".into());
    }
    let first = subject.split('.').next().unwrap_or_default();
    if first.eq_ignore_ascii_case("sluice") || first.starts_with('$') || first == "_INBOX" {
        return Err(format!(
            "must not start with {first:?}: subjects beginning with sluice., $ or _INBOX. belong to \
             the platform and the NATS server"
        ));
    }
    if first == source_stream {
        return Err(format!(
            "must not fall into the source stream {source_stream:?} ({source_stream}.>): the \
             pipeline would consume its own output"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_subjects_stay_out_of_reserved_spaces_and_the_source() {
        assert!(check_sink_subject("alerts.payments", "orders").is_ok());
        assert!(check_sink_subject("orders-copy.events", "orders").is_ok());
        for bad in [
            "",
            "a.*",
            "a.>",
            ">",
            "a b",
            "a\tb",
            "a..b",
            ".a",
            "a.",
            "sluice.acme.orders.events",
            "SLUICE.x",
            "sluice",
            "$JS.API.STREAM.DELETE.x",
            "$SYS.x",
            "_INBOX.abc",
            "orders.events",
            "orders",
            "orders.dead.p",
        ] {
            assert!(check_sink_subject(bad, "orders").is_err(), "{bad:?}");
        }
    }

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
