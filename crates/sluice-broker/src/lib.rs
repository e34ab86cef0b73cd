//! Tenant isolation at the NATS broker, in NATS operator mode (decentralized JWT
//! authentication): one NATS account per tenant, with JetStream limits from the tenant's quota,
//! and users whose permissions allow only what their holder needs.
//!
//! The pure pieces (no I/O): [`keys`] (nkey pairs per role), [`claims`] (typed JWT claims) and
//! [`jwt`] (encoding and signing), [`limits`] (an account's limits from a tenant quota),
//! [`permissions`] (what each identity may publish and subscribe to), [`creds`] (the
//! credentials file a client reads) and [`server_config`] (the nats-server configuration for
//! operator mode), [`bootstrap`] (the operator key, the system account and its administrator
//! an installation starts from) and [`derive`] (account and user keys derived from the
//! operator's seed, so that no per-tenant key is stored). The one piece with I/O is [`admin`]:
//! creating, updating and deleting accounts on a running server through the system account.

pub mod admin;
pub mod bootstrap;
pub mod claims;
pub mod client;
pub mod creds;
pub mod derive;
pub mod jwt;
pub mod keys;
pub mod limits;
pub mod permissions;
pub mod server_config;

pub use admin::{AccountAdmin, AdminError};
pub use bootstrap::Bootstrap;
pub use claims::{AccountClaims, DeleteAccountsClaims, OperatorClaims, UserClaims};
pub use keys::Role;
pub use limits::{AccountLimits, JetStreamLimits, Limit};
pub use permissions::{Permissions, SubjectRules};
