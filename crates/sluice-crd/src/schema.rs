//! Patterns and schema helpers shared by the custom resource types.

use schemars::{Schema, SchemaGenerator, json_schema};

/// A DNS-1123 label: lower-case alphanumerics and `-`, starting and ending with an alphanumeric.
///
/// Length (at most 63) is checked separately.
pub const DNS1123_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// A DNS-1035 label: a DNS-1123 label that starts with a letter. Pipeline names follow it,
/// since their routes' Services are named after them (see `validate::pipeline_name`).
pub const DNS1035_LABEL_PATTERN: &str = r"^[a-z]([-a-z0-9]*[a-z0-9])?$";

/// A duration: one or more `<integer><unit>` terms with unit `ms`, `s`, `m`, `h` or `d`,
/// e.g. `500ms`, `30s`, `24h`, `7d`, `1h30m`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h|d))+$";

/// A publishable NATS subject: dot-separated tokens without wildcards or whitespace.
pub const NATS_SUBJECT_PATTERN: &str = r"^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$";

/// A JetStream stream name: no whitespace, dots, wildcards or path separators.
pub const JETSTREAM_NAME_PATTERN: &str = r"^[A-Za-z0-9_-]+$";

/// A SQL table name, optionally schema-qualified (`events` or `analytics.events`).
pub const SQL_TABLE_PATTERN: &str = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$";

/// An IPv4 or IPv6 CIDR block, e.g. `10.0.0.0/8` or `2001:db8::/32`.
pub const CIDR_PATTERN: &str =
    r"^([0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}|[0-9a-fA-F:]*:[0-9a-fA-F:.]*/[0-9]{1,3})$";

/// An `http://` or `https://` URL.
pub const HTTP_URL_PATTERN: &str = r"^https?://[^\s]+$";

/// Schema of a field holding arbitrary JSON object: an object whose content the API server keeps
/// as it is (`x-kubernetes-preserve-unknown-fields`).
pub(crate) fn preserve_unknown_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}
