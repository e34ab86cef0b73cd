//! NATS JWTs: `base64url(header).base64url(claims).base64url(signature)`, unpadded, where the
//! header is `{"typ":"JWT","alg":"ed25519-nkey"}` and the signature is the issuer's nkey
//! signing the first two parts.

use crate::claims::Claims;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::KeyPair;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The signing algorithm of NATS JWTs.
pub const ALGORITHM: &str = "ed25519-nkey";

/// The JWT header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always `JWT`.
    pub typ: String,
    /// Always [`ALGORITHM`].
    pub alg: String,
}

impl Header {
    fn nats() -> Self {
        Header {
            typ: "JWT".into(),
            alg: ALGORITHM.into(),
        }
    }
}

/// Why a JWT could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The key signing is not the claims' issuer.
    #[error("the claims are issued by {issuer} but the signing key is {signer}")]
    WrongSigner {
        /// `iss` of the claims.
        issuer: String,
        /// Public key of the signing key.
        signer: String,
    },
    /// The key could not sign (it holds no seed).
    #[error("cannot sign: {0}")]
    Sign(String),
    /// Not three base64url parts of JSON, or claims of another shape.
    #[error("malformed JWT: {0}")]
    Malformed(String),
    /// The signature does not match the claims' issuer.
    #[error("the signature is not the issuer's")]
    BadSignature,
}

/// Seconds since the Unix epoch: the `iat` of claims made now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The `jti` of claims: the base64url SHA-256 of their JSON with an empty `jti`.
pub fn claims_id<N: Serialize + Clone>(claims: &Claims<N>) -> String {
    let mut unnamed = claims.clone();
    unnamed.jti.clear();
    let json = serde_json::to_vec(&unnamed).expect("claims serialize to JSON");
    URL_SAFE_NO_PAD.encode(Sha256::digest(json))
}

/// Signs `claims` with `signer`, which must be their issuer, after setting their `jti`.
pub fn encode<N: Serialize + Clone>(
    mut claims: Claims<N>,
    signer: &KeyPair,
) -> Result<String, JwtError> {
    if claims.iss != signer.public_key() {
        return Err(JwtError::WrongSigner {
            issuer: claims.iss,
            signer: signer.public_key(),
        });
    }
    claims.jti = claims_id(&claims);
    let header = serde_json::to_vec(&Header::nats()).expect("the header serializes");
    let body = serde_json::to_vec(&claims).expect("claims serialize to JSON");
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(body)
    );
    let signature = signer
        .sign(signed.as_bytes())
        .map_err(|e| JwtError::Sign(e.to_string()))?;
    Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// Reads a JWT and checks that its issuer (`iss`) signed it.
pub fn decode<N: DeserializeOwned>(jwt: &str) -> Result<Claims<N>, JwtError> {
    let mut parts = jwt.split('.');
    let (Some(header), Some(body), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("not three dot-separated parts".into()));
    };
    let header: Header = from_part(header)?;
    if header.alg != ALGORITHM {
        return Err(JwtError::Malformed(format!(
            "algorithm {:?}, expected {ALGORITHM:?}",
            header.alg
        )));
    }
    let claims: Claims<N> = from_part(body)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|e| JwtError::Malformed(format!("signature: {e}")))?;
    let issuer = KeyPair::from_public_key(&claims.iss)
        .map_err(|e| JwtError::Malformed(format!("issuer: {e}")))?;
    let signed = &jwt[..header_and_body_len(jwt)];
    issuer
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| JwtError::BadSignature)?;
    Ok(claims)
}

fn header_and_body_len(jwt: &str) -> usize {
    jwt.rfind('.').unwrap_or(jwt.len())
}

fn from_part<T: DeserializeOwned>(part: &str) -> Result<T, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| JwtError::Malformed(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| JwtError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::{AccountClaims, AccountNats, OperatorClaims, OperatorNats};
    use crate::keys::{Role, generate};
    use crate::limits::AccountLimits;

    #[test]
    fn a_signed_jwt_reads_back_and_names_its_claims() {
        let op = generate(Role::Operator);
        let sys = generate(Role::Account);
        let claims = OperatorClaims::operator(&op.public_key(), "sluice", &sys.public_key(), 100);
        let jwt = encode(claims.clone(), &op).unwrap();
        assert_eq!(jwt.split('.').count(), 3);
        assert!(!jwt.contains('='), "unpadded");
        let header: Header = from_part(jwt.split('.').next().unwrap()).unwrap();
        assert_eq!(header, Header::nats());
        let back: Claims<OperatorNats> = decode(&jwt).unwrap();
        assert_eq!(back.jti, claims_id(&claims));
        assert_eq!(back.nats, claims.nats);
        assert_eq!(back.iat, 100);
        // The id follows the claims.
        let other = OperatorClaims::operator(&op.public_key(), "sluice", &sys.public_key(), 101);
        assert_ne!(claims_id(&other), back.jti);
    }

    #[test]
    fn only_the_issuer_signs_and_tampering_shows() {
        let op = generate(Role::Operator);
        let account = generate(Role::Account);
        let claims = AccountClaims::account(
            &op.public_key(),
            &account.public_key(),
            "acme",
            &AccountLimits::default(),
            1,
        );
        assert!(matches!(
            encode(claims.clone(), &account),
            Err(JwtError::WrongSigner { .. })
        ));
        let jwt = encode(claims, &op).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        let mut forged: Claims<AccountNats> = from_part(parts[1]).unwrap();
        forged.name = "other".into();
        let forged_body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let forged = format!("{}.{forged_body}.{}", parts[0], parts[2]);
        assert!(matches!(
            decode::<AccountNats>(&forged),
            Err(JwtError::BadSignature)
        ));
        assert!(matches!(
            decode::<AccountNats>("a.b"),
            Err(JwtError::Malformed(_))
        ));
    }
}
