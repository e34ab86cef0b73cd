//! What each identity may publish and subscribe to. Accounts separate tenants (a tenant's
//! users see nothing of another account); these rules narrow what each user may do inside its
//! own account.
//!
//! - A route's user may do what the worker does ([`route`]): read its source stream's info,
//!   read, create and update its own durable consumer, pull from it and acknowledge, and publish
//!   to its sink subject and its dead-letter subject. It cannot create or delete streams, nor
//!   touch other consumers.
//! - A tenant's ingest user ([`ingest`]) may publish events to the tenant's streams.
//! - The platform's stream manager ([`stream_manager`]), a user the operator holds in every
//!   tenant account, may use the whole JetStream API of that account.
//! - The account administrator ([`account_admin`]), a user of the system account, may create,
//!   update and delete accounts.
//!
//! Every identity subscribes to `_INBOX.>`, where the replies to its requests (JetStream API
//! answers, publish acknowledgements, pulled messages) arrive.

use crate::admin::{CLAIMS_DELETE, CLAIMS_UPDATE};
use serde::{Deserialize, Serialize};
use sluice_core::route::{RouteConfig, Sink, Source};
use sluice_core::subjects;

/// Where replies arrive (async-nats' default inbox prefix).
pub const INBOX: &str = "_INBOX.>";
/// The inbox prefix of the API's ingest connections (async-nats' `custom_inbox_prefix`): the
/// scope of the ingest key allows replies on it only, so an ingest user never reads the
/// replies meant for the account's other users (the operator's JetStream API answers, the
/// route workers' pulled events).
pub const INGEST_INBOX_PREFIX: &str = "_INBOX_sluice_ingest";

/// Allowed and denied subjects (NATS wildcards `*` and `>` allowed). The server's rule: a
/// subject is permitted when `allow` is empty or one of its subjects matches, and no `deny`
/// subject matches. An empty `allow` therefore permits everything; use [`SubjectRules::none`]
/// to permit nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectRules {
    /// Subjects permitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Subjects refused, whatever `allow` says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

impl SubjectRules {
    /// Only these subjects.
    pub fn allow<S: Into<String>>(subjects: impl IntoIterator<Item = S>) -> Self {
        SubjectRules {
            allow: subjects.into_iter().map(Into::into).collect(),
            deny: Vec::new(),
        }
    }

    /// No subject at all.
    pub fn none() -> Self {
        SubjectRules {
            allow: Vec::new(),
            deny: vec![">".into()],
        }
    }

    /// Whether the server permits `subject` under these rules.
    pub fn permits(&self, subject: &str) -> bool {
        let allowed = self.allow.is_empty() || self.allow.iter().any(|p| matches(p, subject));
        allowed && !self.deny.iter().any(|p| matches(p, subject))
    }
}

/// Whether the subject pattern `pattern` (with `*` for one token and a final `>` for one or
/// more) matches the literal `subject`.
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut subject = subject.split('.');
    for p in pattern.split('.') {
        match (p, subject.next()) {
            (">", Some(_)) => return true,
            (_, None) => return false,
            ("*", Some(_)) => {}
            (p, Some(s)) if p == s => {}
            _ => return false,
        }
    }
    subject.next().is_none()
}

/// A user's permissions, as the user JWT holds them (`pub`, `sub`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    /// What the user may publish to (requests included).
    #[serde(rename = "pub")]
    pub publish: SubjectRules,
    /// What the user may subscribe to.
    #[serde(rename = "sub")]
    pub subscribe: SubjectRules,
}

/// The JetStream API subjects a route's worker uses on its durable consumer `durable` of the
/// JetStream stream `stream` (async-nats' subjects): stream info (to bind), consumer info (to
/// bind and to read its lag), consumer create and update (a create names the consumer and its
/// filter subject), pulls, and acknowledgements. Acknowledgement subjects come in the form
/// nats-server 2.9 uses, `$JS.ACK.<stream>.<consumer>.…`, and in the longer form with a domain
/// and an account hash, `$JS.ACK.<domain>.<hash>.<stream>.<consumer>.…`, which the worker also
/// reads; the two never overlap, since the tokens after a short form's consumer are numbers.
pub fn consumer_api(stream: &str, durable: &str) -> Vec<String> {
    vec![
        format!("$JS.API.STREAM.INFO.{stream}"),
        format!("$JS.API.CONSUMER.INFO.{stream}.{durable}"),
        format!("$JS.API.CONSUMER.CREATE.{stream}.{durable}"),
        format!("$JS.API.CONSUMER.CREATE.{stream}.{durable}.>"),
        format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"),
        format!("$JS.ACK.{stream}.{durable}.>"),
        format!("$JS.ACK.*.*.{stream}.{durable}.>"),
    ]
}

/// The NATS subject a sink publishes to, for the sinks that publish on the broker.
pub fn sink_subject(sink: &Sink) -> Option<&str> {
    match sink {
        Sink::Nats { subject, .. } | Sink::Jetstream { subject, .. } => Some(subject),
        _ => None,
    }
}

/// The inbox prefix of the route called `route` (its objects' name, unique in its tenant's
/// namespace, so in its account): its user may read replies on it only, never those of the
/// account's other routes or of the platform.
pub fn route_inbox_prefix(route: &str) -> String {
    format!("_INBOX_route_{route}")
}

/// The permissions of a route's user: exactly what the worker running `config` does on the
/// broker. Replies arrive on the route's inbox prefix (`broker.inboxPrefix`), or on the
/// default inboxes when the configuration names none.
pub fn route(config: &RouteConfig) -> Permissions {
    let mut publish = match &config.source {
        Source::Jetstream {
            stream, durable, ..
        } => consumer_api(stream, durable),
        // A route reading Kafka uses the NATS broker only for a NATS sink or dead letters.
        Source::Kafka { .. } => vec![],
    };
    publish.extend(sink_subject(&config.sink).map(str::to_string));
    if config.dead_letter.kafka.is_none() {
        publish.push(config.dead_letter.subject.clone());
    }
    let inbox = match &config.broker.inbox_prefix {
        Some(prefix) => format!("{prefix}.>"),
        None => INBOX.to_string(),
    };
    Permissions {
        publish: SubjectRules::allow(publish),
        subscribe: SubjectRules::allow([inbox]),
    }
}

/// The permissions of a tenant's ingest user: publishing events to any of the tenant's
/// streams (`sluice.<tenant>.*.events`) and reading the acknowledgements.
pub fn ingest(tenant: &str) -> Permissions {
    Permissions {
        publish: SubjectRules::allow([subjects::events_subject(tenant, "*")]),
        subscribe: SubjectRules::allow([INBOX]),
    }
}

/// The scope of the ingest key in `tenant`'s account: publishing the tenant's events, and
/// replies on the ingest inbox prefix only ([`INGEST_INBOX_PREFIX`]).
pub fn ingest_scope(tenant: &str) -> Permissions {
    Permissions {
        publish: SubjectRules::allow([subjects::events_subject(tenant, "*")]),
        subscribe: SubjectRules::allow([format!("{INGEST_INBOX_PREFIX}.>")]),
    }
}

/// The permissions of the platform's stream manager in a tenant account: the JetStream API
/// (streams are created, updated and deleted by the operator), and nothing else.
pub fn stream_manager() -> Permissions {
    Permissions {
        publish: SubjectRules::allow(["$JS.API.>"]),
        subscribe: SubjectRules::allow([INBOX]),
    }
}

/// The permissions of the account administrator in the system account: the requests that
/// create, update and delete accounts.
pub fn account_admin() -> Permissions {
    Permissions {
        publish: SubjectRules::allow([CLAIMS_UPDATE, CLAIMS_DELETE]),
        subscribe: SubjectRules::allow([INBOX]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(sink: &str) -> RouteConfig {
        RouteConfig::from_json(&format!(
            r#"{{
              "tenant": "acme", "pipeline": "orders", "route": "alerts",
              "source": {{"kind": "jetstream", "url": "nats://127.0.0.1:4222",
                         "stream": "sluice_acme_orders", "subject": "sluice.acme.orders.events",
                         "durable": "orders_alerts"}},
              "sink": {sink},
              "deadLetter": {{"url": "nats://127.0.0.1:4222",
                              "subject": "sluice.acme.orders.dead.orders"}}
            }}"#
        ))
        .unwrap()
    }

    #[test]
    fn wildcards_match_like_the_server() {
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "a.b.c"));
        assert!(!matches("a.b.c", "a.b"));
        assert!(matches("a.*.c", "a.x.c"));
        assert!(!matches("a.*", "a.x.c"));
        assert!(matches("a.>", "a.x.c"));
        assert!(!matches("a.>", "a"));
        assert!(matches(">", "anything.at.all"));
        assert!(SubjectRules::default().permits("x"));
        assert!(!SubjectRules::none().permits("x"));
    }

    #[test]
    fn a_route_may_do_what_its_worker_does_and_nothing_else() {
        let p = route(&config(
            r#"{"kind": "nats", "url": "nats://127.0.0.1:4222", "subject": "sluice.acme.alerts.big"}"#,
        ));
        for ok in [
            "$JS.API.STREAM.INFO.sluice_acme_orders",
            "$JS.API.CONSUMER.INFO.sluice_acme_orders.orders_alerts",
            "$JS.API.CONSUMER.CREATE.sluice_acme_orders.orders_alerts",
            "$JS.API.CONSUMER.CREATE.sluice_acme_orders.orders_alerts.sluice.acme.orders.events",
            "$JS.API.CONSUMER.MSG.NEXT.sluice_acme_orders.orders_alerts",
            "$JS.ACK.sluice_acme_orders.orders_alerts.1.2.3.1700000000000000000.0",
            "$JS.ACK._.HASH.sluice_acme_orders.orders_alerts.1.2.3.1700000000000000000.0.tok",
            "sluice.acme.alerts.big",
            "sluice.acme.orders.dead.orders",
        ] {
            assert!(p.publish.permits(ok), "{ok}");
        }
        for refused in [
            "$JS.API.STREAM.DELETE.sluice_acme_orders",
            "$JS.API.STREAM.CREATE.sluice_acme_x",
            "$JS.API.STREAM.PURGE.sluice_acme_orders",
            "$JS.API.STREAM.MSG.GET.sluice_acme_orders",
            "$JS.API.STREAM.INFO.sluice_other_orders",
            "$JS.API.CONSUMER.CREATE.sluice_acme_orders",
            "$JS.API.CONSUMER.CREATE.sluice_acme_orders.other",
            "$JS.API.CONSUMER.DELETE.sluice_acme_orders.orders_alerts",
            "$JS.API.CONSUMER.MSG.NEXT.sluice_acme_orders.other",
            "$JS.ACK.sluice_acme_orders.other.1.2.3.4.0",
            "$JS.ACK._.HASH.sluice_acme_orders.other.1.2.3.4.0.tok",
            "$JS.ACK._.HASH.sluice_other_orders.orders_alerts.1.2.3.4.0.tok",
            "sluice.acme.orders.events",
            "sluice.other.orders.events",
            "_INBOX.abc",
        ] {
            assert!(!p.publish.permits(refused), "{refused}");
        }
        assert!(p.subscribe.permits("_INBOX.abc.1"));
        assert!(!p.subscribe.permits("sluice.acme.orders.events"));
        assert!(!p.subscribe.permits("sluice.other.>"));
    }

    #[test]
    fn a_route_with_its_own_inbox_prefix_reads_no_other_replies() {
        let mut c = config(
            r#"{"kind": "nats", "url": "nats://127.0.0.1:4222", "subject": "sluice.acme.alerts.big"}"#,
        );
        c.broker.inbox_prefix = Some(route_inbox_prefix("orders-alerts"));
        let p = route(&c);
        assert!(p.subscribe.permits("_INBOX_route_orders-alerts.abc.1"));
        assert!(!p.subscribe.permits("_INBOX.abc.1"));
        assert!(!p.subscribe.permits("_INBOX_route_orders-other.abc.1"));
        assert!(!p.subscribe.permits("_INBOX_sluice_ingest.abc"));
    }

    #[test]
    fn routes_without_a_broker_sink_publish_only_dead_letters() {
        let p = route(&config(
            r#"{"kind": "http", "url": "http://127.0.0.1:8080/hook"}"#,
        ));
        assert!(p.publish.permits("sluice.acme.orders.dead.orders"));
        assert_eq!(p.publish.allow.len(), consumer_api("s", "d").len() + 1);
    }

    #[test]
    fn ingest_reaches_only_the_tenants_events_subjects() {
        let p = ingest("acme");
        assert!(p.publish.permits("sluice.acme.orders.events"));
        assert!(!p.publish.permits("sluice.acme.orders.dead.p"));
        assert!(!p.publish.permits("sluice.other.orders.events"));
        assert!(
            !p.publish
                .permits("$JS.API.STREAM.DELETE.sluice_acme_orders")
        );
        assert!(!p.subscribe.permits("sluice.acme.orders.events"));
    }

    #[test]
    fn platform_identities() {
        let m = stream_manager();
        assert!(
            m.publish
                .permits("$JS.API.STREAM.CREATE.sluice_acme_orders")
        );
        assert!(!m.publish.permits("sluice.acme.orders.events"));
        let a = account_admin();
        assert!(a.publish.permits("$SYS.REQ.CLAIMS.UPDATE"));
        assert!(a.publish.permits("$SYS.REQ.CLAIMS.DELETE"));
        assert!(!a.publish.permits("$SYS.REQ.SERVER.PING"));
    }
}
