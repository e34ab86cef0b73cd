//! File / standard output sink (debugging): one JSON document per line.

use super::{Sink, SinkError, ndjson};
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

/// Appends NDJSON to a file, or writes it to standard output.
pub struct FileSink {
    path: Option<String>,
}

impl FileSink {
    /// A sink appending to `path`, or writing to standard output when `None`.
    pub fn new(path: Option<&str>) -> Self {
        FileSink {
            path: path.map(String::from),
        }
    }
}

impl Sink for FileSink {
    async fn deliver(&mut self, events: &[Bytes]) -> Result<(), SinkError> {
        let body = ndjson(events);
        let result = match &self.path {
            Some(path) => {
                async {
                    let mut f = tokio::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .await?;
                    f.write_all(&body).await?;
                    f.flush().await
                }
                .await
            }
            None => {
                let mut out = tokio::io::stdout();
                match out.write_all(&body).await {
                    Ok(()) => out.flush().await,
                    Err(e) => Err(e),
                }
            }
        };
        result.map_err(|e| SinkError::Transient(format!("write: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        let mut s = FileSink::new(path.to_str());
        s.deliver(&[Bytes::from_static(b"{\"a\":1}")])
            .await
            .unwrap();
        s.deliver(&[Bytes::from_static(b"{\"a\":2}")])
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n"
        );
    }
}
