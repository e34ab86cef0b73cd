//! Loading the route configuration from a file, and reading the secrets it points to.

use sluice_core::route::{FieldError, RouteConfig};
use std::path::{Path, PathBuf};

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the route configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a route configuration (not JSON, unknown or missing fields).
    #[error("the route configuration is not valid: {0}")]
    Parse(String),
    /// The configuration parses but some fields are wrong.
    #[error("the route configuration is not valid:\n{}", list(.0))]
    Invalid(Vec<FieldError>),
}

fn list(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parses and validates a configuration text.
pub fn parse(text: &str) -> Result<RouteConfig, ConfigError> {
    let config = RouteConfig::from_json(text).map_err(ConfigError::Parse)?;
    let errors = config.validate();
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(errors))
    }
}

/// Reads, parses and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<RouteConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text)
}

/// Reads a mounted secret file; surrounding whitespace (a trailing newline) is removed.
pub fn read_secret(path: &str) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
      "tenant": "acme", "pipeline": "orders", "route": "audit",
      "source": {"kind": "jetstream", "url": "nats://127.0.0.1:4222", "stream": "s",
                 "subject": "s.events", "durable": "orders_audit"},
      "sink": {"kind": "file"},
      "deadLetter": {"url": "nats://127.0.0.1:4222", "subject": "s.dead"}
    }"#;

    #[test]
    fn good_config_loads() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.route, "audit");
    }

    #[test]
    fn errors_name_the_fields() {
        let bad = GOOD
            .replace(
                r#""sink": {"kind": "file"}"#,
                r#""sink": {"kind": "http", "url": "ftp://x"}"#,
            )
            .replace(r#""route": "audit""#, r#""route": "Audit!""#);
        let err = parse(&bad).unwrap_err().to_string();
        assert!(err.contains("sink.url"), "{err}");
        assert!(err.contains("route:"), "{err}");
        let err = parse("{").unwrap_err();
        assert!(matches!(err, ConfigError::Parse(_)));
        let err = load(Path::new("/nonexistent/route.json")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/route.json"));
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let c = parse(include_str!("../examples/route.json")).unwrap();
        assert_eq!(c.route, "big-orders");
    }

    #[test]
    fn secrets_are_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "Bearer abc\n").unwrap();
        assert_eq!(read_secret(p.to_str().unwrap()).unwrap(), "Bearer abc");
    }
}
