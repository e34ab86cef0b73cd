//! Key pairs: ed25519 nkeys, one per identity. The role shows in the first letter of the public
//! key (`O` operator, `A` account, `U` user) and the seed starts with `S` and the same letter.

use nkeys::{KeyPair, KeyPairType};

/// The role of a key pair in NATS operator mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Signs account JWTs (and its own JWT). The Sluice operator holds it.
    Operator,
    /// A NATS account: one per tenant, plus the system account. Signs its users' JWTs.
    Account,
    /// A user of an account: what a client connects as.
    User,
}

impl Role {
    pub(crate) fn key_type(self) -> KeyPairType {
        match self {
            Role::Operator => KeyPairType::Operator,
            Role::Account => KeyPairType::Account,
            Role::User => KeyPairType::User,
        }
    }

    /// The first letter of this role's public keys.
    pub fn prefix(self) -> char {
        match self {
            Role::Operator => 'O',
            Role::Account => 'A',
            Role::User => 'U',
        }
    }
}

/// Why a key was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The text is not an nkey seed or public key.
    #[error("not a valid nkey: {0}")]
    Invalid(String),
    /// The key is valid but of another role.
    #[error("expected a key of role {expected:?}, got one starting with {got:?}")]
    WrongRole {
        /// The role wanted.
        expected: Role,
        /// The first letter of the public key given.
        got: char,
    },
}

/// A new random key pair of `role`.
pub fn generate(role: Role) -> KeyPair {
    KeyPair::new(role.key_type())
}

/// The key pair of a seed (`SO…`, `SA…`, `SU…`), checked to be of `role`.
pub fn from_seed(role: Role, seed: &str) -> Result<KeyPair, KeyError> {
    let kp = KeyPair::from_seed(seed).map_err(|e| KeyError::Invalid(e.to_string()))?;
    check_role(role, &kp.public_key())?;
    Ok(kp)
}

/// Checks that `public_key` is a valid public nkey of `role`.
pub fn check_public_key(role: Role, public_key: &str) -> Result<(), KeyError> {
    KeyPair::from_public_key(public_key).map_err(|e| KeyError::Invalid(e.to_string()))?;
    check_role(role, public_key)
}

fn check_role(role: Role, public_key: &str) -> Result<(), KeyError> {
    let got = public_key.chars().next().unwrap_or(' ');
    if got == role.prefix() {
        Ok(())
    } else {
        Err(KeyError::WrongRole {
            expected: role,
            got,
        })
    }
}

/// The seed of a key pair made by [`generate`] or [`from_seed`] (which always have one).
pub fn seed(kp: &KeyPair) -> String {
    kp.seed()
        .expect("key pairs made by this module hold their seed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_their_role() {
        for role in [Role::Operator, Role::Account, Role::User] {
            let kp = generate(role);
            assert!(kp.public_key().starts_with(role.prefix()));
            let s = seed(&kp);
            assert!(s.starts_with(&format!("S{}", role.prefix())), "{s}");
            let again = from_seed(role, &s).unwrap();
            assert_eq!(again.public_key(), kp.public_key());
            assert_eq!(check_public_key(role, &kp.public_key()), Ok(()));
        }
    }

    #[test]
    fn keys_of_another_role_or_garbage_are_refused() {
        let account = generate(Role::Account);
        assert_eq!(
            from_seed(Role::User, &seed(&account)).unwrap_err(),
            KeyError::WrongRole {
                expected: Role::User,
                got: 'A'
            }
        );
        assert!(matches!(
            check_public_key(Role::Operator, &account.public_key()),
            Err(KeyError::WrongRole { .. })
        ));
        assert!(matches!(
            from_seed(Role::User, "SUnot-a-seed"),
            Err(KeyError::Invalid(_))
        ));
        assert!(matches!(
            check_public_key(Role::Account, "Anope"),
            Err(KeyError::Invalid(_))
        ));
    }
}
