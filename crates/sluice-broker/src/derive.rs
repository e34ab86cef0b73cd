//! Keys derived from the operator's seed. The same operator seed and the same inputs always
//! give the same key, so the Sluice operator stores no per-tenant key material: a tenant's
//! account key follows from the Tenant's uid (a Tenant deleted and created again under the same
//! name gets a new account), and the key of each platform user of that account from what the
//! user is for.
//!
//! A derived seed is SHA-256 over a domain label, the operator seed and the inputs, each
//! length-prefixed so that no two input lists give the same bytes. Whoever holds the operator
//! seed can derive every key; nobody else can derive any.

use crate::keys::Role;
use nkeys::KeyPair;
use sha2::{Digest, Sha256};

fn derive(operator: &KeyPair, role: Role, label: &str, inputs: &[&str]) -> KeyPair {
    let mut h = Sha256::new();
    let operator_seed = crate::keys::seed(operator);
    for part in [label, operator_seed.as_str()].iter().chain(inputs) {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let bytes: [u8; 32] = h.finalize().into();
    KeyPair::new_from_raw(role.key_type(), bytes)
        .expect("a 32-byte seed makes a key pair of any type")
}

/// The system account's key, for installations that keep only the operator seed (local mode).
pub fn system_account_key(operator: &KeyPair) -> KeyPair {
    derive(operator, Role::Account, "sluice/system-account/v1", &[])
}

/// The system account administrator's key, for installations that keep only the operator seed.
pub fn system_admin_key(operator: &KeyPair) -> KeyPair {
    derive(operator, Role::User, "sluice/system-admin/v1", &[])
}

/// The account key of the tenant whose uid is `tenant_uid`.
pub fn account_key(operator: &KeyPair, tenant_uid: &str) -> KeyPair {
    derive(operator, Role::Account, "sluice/account/v1", &[tenant_uid])
}

/// The key of the platform's user `purpose` (e.g. `stream-manager`) in `account` (a public
/// key).
pub fn user_key(operator: &KeyPair, account: &str, purpose: &str) -> KeyPair {
    derive(operator, Role::User, "sluice/user/v1", &[account, purpose])
}

/// The signing key of route `route` (its pipeline's uid and its sink) in `account`, for
/// rotation epoch `epoch`: the account lists it as a signing key scoped to the route's
/// permissions while the route's users of that epoch may connect.
pub fn route_signing_key(operator: &KeyPair, account: &str, route: &str, epoch: u64) -> KeyPair {
    derive(
        operator,
        Role::Account,
        "sluice/route-signing/v1",
        &[account, route, &epoch.to_string()],
    )
}

/// The key of route `route`'s user in `account` for rotation epoch `epoch`.
pub fn route_user_key(operator: &KeyPair, account: &str, route: &str, epoch: u64) -> KeyPair {
    derive(
        operator,
        Role::User,
        "sluice/route-user/v1",
        &[account, route, &epoch.to_string()],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::generate;

    #[test]
    fn the_same_inputs_give_the_same_key_and_others_another() {
        let op = generate(Role::Operator);
        let a = account_key(&op, "uid-1");
        assert!(a.public_key().starts_with('A'));
        assert_eq!(a.public_key(), account_key(&op, "uid-1").public_key());
        assert_ne!(a.public_key(), account_key(&op, "uid-2").public_key());
        let other_operator = generate(Role::Operator);
        assert_ne!(
            a.public_key(),
            account_key(&other_operator, "uid-1").public_key()
        );
        let u = user_key(&op, &a.public_key(), "stream-manager");
        assert!(u.public_key().starts_with('U'));
        assert_eq!(
            u.public_key(),
            user_key(&op, &a.public_key(), "stream-manager").public_key()
        );
        assert_ne!(
            u.public_key(),
            user_key(&op, &a.public_key(), "ingest").public_key()
        );
        let r = route_signing_key(&op, &a.public_key(), "p-uid/alerts", 7);
        assert!(r.public_key().starts_with('A'));
        assert_ne!(
            r.public_key(),
            route_signing_key(&op, &a.public_key(), "p-uid/alerts", 8).public_key()
        );
        assert_ne!(
            r.public_key(),
            route_signing_key(&op, &a.public_key(), "p-uid/other", 7).public_key()
        );
        assert!(
            route_user_key(&op, &a.public_key(), "p-uid/alerts", 7)
                .public_key()
                .starts_with('U')
        );
        // Length prefixes: moving a character between inputs changes the key.
        assert_ne!(
            user_key(&op, "ab", "c").public_key(),
            user_key(&op, "a", "bc").public_key()
        );
    }
}
