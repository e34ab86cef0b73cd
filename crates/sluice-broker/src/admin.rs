//! Account administration on a running server: a client of the system account asks the
//! server's full resolver to store an account JWT (creating or updating the account) or to
//! delete accounts (closing their connections and refusing new ones).

use crate::claims::{AccountNats, DeleteAccountsClaims};
use crate::jwt::{self, JwtError};
use nkeys::KeyPair;
use serde::Deserialize;
use std::time::Duration;

/// The request that stores an account JWT; its body is the JWT.
pub const CLAIMS_UPDATE: &str = "$SYS.REQ.CLAIMS.UPDATE";
/// The request that deletes accounts; its body is a [`DeleteAccountsClaims`] JWT signed by the
/// operator.
pub const CLAIMS_DELETE: &str = "$SYS.REQ.CLAIMS.DELETE";

/// How long a request waits for the server's answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an account could not be created, updated or deleted.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The server could not be reached, or refused the credentials.
    #[error("cannot connect to the broker at {url}: {reason}")]
    Connect {
        /// The server URL.
        url: String,
        /// The client's error.
        reason: String,
    },
    /// The credentials are not a creds file.
    #[error("the account administrator's credentials are not a creds file: {0}")]
    Credentials(String),
    /// The request got no answer: no server with a full resolver answers it (the server is not
    /// in operator mode, or the user is not of the system account), or it timed out.
    #[error(
        "{subject} got no answer ({reason}); is the server in operator mode with a full resolver, \
         and are the credentials a system account user's?"
    )]
    NoAnswer {
        /// The request subject.
        subject: &'static str,
        /// The client's error.
        reason: String,
    },
    /// The server refused the request, e.g. a JWT not signed by its operator.
    #[error("the broker refused {subject}: {description} (code {code})")]
    Refused {
        /// The request subject.
        subject: &'static str,
        /// The server's code (HTTP-like).
        code: u16,
        /// The server's reason.
        description: String,
    },
    /// The answer was not the server's usual JSON.
    #[error("unexpected answer to {subject}: {answer}")]
    BadAnswer {
        /// The request subject.
        subject: &'static str,
        /// The answer's text.
        answer: String,
    },
    /// The account JWT is issued by another operator. nats-server 2.9 stores such a JWT
    /// ("jwt updated") but lets none of its users in, so it is refused before it is sent.
    #[error("the account JWT is issued by {issuer}, not by this broker's operator {operator}")]
    ForeignIssuer {
        /// `iss` of the account JWT.
        issuer: String,
        /// The operator's public key.
        operator: String,
    },
    /// The account JWT could not be read, or the delete request could not be signed.
    #[error(transparent)]
    Jwt(#[from] JwtError),
}

/// The server's answer to a claims request: `data` on success, `error` otherwise.
#[derive(Debug, Deserialize)]
struct Answer {
    data: Option<AnswerData>,
    error: Option<AnswerError>,
}

#[derive(Debug, Deserialize)]
struct AnswerData {
    message: String,
}

#[derive(Debug, Deserialize)]
struct AnswerError {
    code: u16,
    description: String,
}

/// A connection of the system account's administrator, holding the operator key that signs
/// deletions.
pub struct AccountAdmin {
    client: async_nats::Client,
    operator: KeyPair,
}

impl AccountAdmin {
    /// Connects to `url` with `creds` (the text of a system account user's creds file, see
    /// [`crate::creds::creds_file`]); `operator` signs the deletions.
    pub async fn connect(url: &str, creds: &str, operator: KeyPair) -> Result<Self, AdminError> {
        Self::connect_tls(url, creds, operator, None).await
    }

    /// [`AccountAdmin::connect`], with TLS as `tls` says ([`crate::client::with_tls`]).
    pub async fn connect_tls(
        url: &str,
        creds: &str,
        operator: KeyPair,
        tls: Option<&sluice_core::route::BrokerTls>,
    ) -> Result<Self, AdminError> {
        let options = async_nats::ConnectOptions::with_credentials(creds)
            .map_err(|e| AdminError::Credentials(e.to_string()))?;
        let client = crate::client::with_tls(options, tls)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .connection_timeout(REQUEST_TIMEOUT)
            .connect(url)
            .await
            .map_err(|e| AdminError::Connect {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        Ok(AccountAdmin { client, operator })
    }

    /// Creates the account of `account_jwt` (signed by the operator), or updates it (its
    /// limits) when it exists. Answers the server's message.
    pub async fn upsert_account(&self, account_jwt: &str) -> Result<String, AdminError> {
        let claims = jwt::decode::<AccountNats>(account_jwt)?;
        if claims.iss != self.operator.public_key() {
            return Err(AdminError::ForeignIssuer {
                issuer: claims.iss,
                operator: self.operator.public_key(),
            });
        }
        self.request(CLAIMS_UPDATE, account_jwt.to_string()).await
    }

    /// Deletes `accounts` (public keys): their connections are closed and their users refused.
    /// Answers the server's message.
    pub async fn delete_accounts(&self, accounts: &[String]) -> Result<String, AdminError> {
        let claims = DeleteAccountsClaims::delete_accounts(
            &self.operator.public_key(),
            accounts,
            jwt::now(),
        );
        let token = jwt::encode(claims, &self.operator)?;
        self.request(CLAIMS_DELETE, token).await
    }

    async fn request(&self, subject: &'static str, body: String) -> Result<String, AdminError> {
        let reply = self
            .client
            .request(subject, body.into())
            .await
            .map_err(|e| AdminError::NoAnswer {
                subject,
                reason: e.to_string(),
            })?;
        read_answer(subject, &reply.payload)
    }
}

/// The message of a successful answer, or why the server refused.
fn read_answer(subject: &'static str, payload: &[u8]) -> Result<String, AdminError> {
    let bad = || AdminError::BadAnswer {
        subject,
        answer: String::from_utf8_lossy(payload).into_owned(),
    };
    let answer: Answer = serde_json::from_slice(payload).map_err(|_| bad())?;
    match (answer.data, answer.error) {
        (_, Some(e)) => Err(AdminError::Refused {
            subject,
            code: e.code,
            description: e.description,
        }),
        (Some(d), None) => Ok(d.message),
        (None, None) => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_into_messages_or_typed_refusals() {
        let ok =
            br#"{"server":{"name":"x"},"data":{"code":200,"account":"A","message":"jwt updated"}}"#;
        assert_eq!(read_answer(CLAIMS_UPDATE, ok).unwrap(), "jwt updated");
        let refused =
            br#"{"error":{"code":400,"account":"A","description":"jwt not signed by operator"}}"#;
        match read_answer(CLAIMS_UPDATE, refused) {
            Err(AdminError::Refused {
                code, description, ..
            }) => {
                assert_eq!(code, 400);
                assert!(description.contains("not signed"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_answer(CLAIMS_DELETE, b"nope"),
            Err(AdminError::BadAnswer { .. })
        ));
        assert!(matches!(
            read_answer(CLAIMS_DELETE, b"{}"),
            Err(AdminError::BadAnswer { .. })
        ));
    }
}
