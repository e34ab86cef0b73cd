//! HTTP webhook sink: each batch is one POST of a JSON array. 5xx, 408, 429, timeouts and
//! connection errors are transient (retried); any other 4xx, a redirect (never followed) and
//! a destination the platform's egress policy denies refuse the batch for good.

use super::{SetupError, Sink, SinkError, egress, json_array};
use bytes::Bytes;
use reqwest::StatusCode;
use sluice_core::egress::Egress;
use sluice_core::route::Sink as SinkConfig;
use std::sync::Arc;
use std::time::Duration;

/// POSTs batches to a URL.
pub struct HttpSink {
    client: reqwest::Client,
    url: String,
    authorization: Option<String>,
    egress: Arc<Egress>,
}

/// How a response status counts.
pub fn classify(status: StatusCode) -> Result<(), SinkError> {
    if status.is_success() {
        Ok(())
    } else if status.is_redirection() {
        Err(SinkError::Rejected(format!(
            "http status {status}: redirects are not followed"
        )))
    } else if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        Err(SinkError::Transient(format!("http status {status}")))
    } else if status.is_client_error() {
        Err(SinkError::Rejected(format!("http status {status}")))
    } else {
        Err(SinkError::Transient(format!(
            "unexpected http status {status}"
        )))
    }
}

impl HttpSink {
    /// A sink for an `http` sink configuration, reaching only what `egress` permits; reads
    /// the authorization file.
    pub fn new(config: &SinkConfig, egress: Arc<Egress>) -> Result<Self, SetupError> {
        let SinkConfig::Http {
            url,
            authorization_file,
            connect_timeout_ms,
            request_timeout_ms,
        } = config
        else {
            return Err(SetupError("not an http sink".into()));
        };
        let authorization = authorization_file
            .as_deref()
            .map(|p| {
                crate::config::read_secret(p)
                    .map_err(|e| SetupError(format!("sink.authorizationFile {p}: {e}")))
            })
            .transpose()?;
        let client = egress::client_builder(egress.clone())
            .connect_timeout(Duration::from_millis(*connect_timeout_ms))
            .timeout(Duration::from_millis(*request_timeout_ms))
            .build()
            .map_err(|e| SetupError(format!("http client: {e}")))?;
        Ok(HttpSink {
            client,
            url: url.clone(),
            authorization,
            egress,
        })
    }
}

impl Sink for HttpSink {
    async fn deliver(&mut self, events: &[Bytes]) -> Result<(), SinkError> {
        egress::check_url(&self.egress, &self.url)
            .map_err(|d| SinkError::Rejected(format!("http: {d}")))?;
        let mut request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json_array(events));
        if let Some(a) = &self.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, a);
        }
        let response = request.send().await.map_err(|e| match egress::denial(&e) {
            Some(d) => SinkError::Rejected(format!("http: {d}")),
            None => SinkError::Transient(format!("http: {e}")),
        })?;
        classify(response.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert!(classify(StatusCode::OK).is_ok());
        assert!(classify(StatusCode::NO_CONTENT).is_ok());
        for s in [503, 500, 408, 429] {
            let s = StatusCode::from_u16(s).unwrap();
            assert!(matches!(classify(s), Err(SinkError::Transient(_))), "{s}");
        }
        for s in [400, 401, 404, 413, 422, 301, 302, 307, 308] {
            let s = StatusCode::from_u16(s).unwrap();
            assert!(matches!(classify(s), Err(SinkError::Rejected(_))), "{s}");
        }
    }
}
