//! [`TenantName`]: a tenant's name, checked once where it enters the API (the `{tenant}` path
//! parameter, the body of a tenant create) and trusted after.

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use sluice_core::names::{MAX_TENANT_NAME, check_name};

/// A valid tenant name: a DNS-1123 label of at most [`MAX_TENANT_NAME`] characters, so that
/// the tenant's namespace `sluice-<name>` is a label too. It names the tenant's `Tenant`
/// object and its registry row (whose `id` is a separate UUID). Shown and compared as the
/// name itself.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantName(String);

/// Why a string is not a tenant name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidTenantName(pub String);

impl TenantName {
    /// `name` when it is a valid tenant name; else why not (e.g. `must not be empty`).
    pub fn parse(name: &str) -> Result<TenantName, InvalidTenantName> {
        match check_name(name, MAX_TENANT_NAME) {
            Some(reason) => Err(InvalidTenantName(reason)),
            None => Ok(TenantName(name.to_string())),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for TenantName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for TenantName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for TenantName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Like the name's own `Debug` (quoted), so messages read `tenant "acme" not found`.
impl fmt::Debug for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl FromStr for TenantName {
    type Err = InvalidTenantName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TenantName::parse(s)
    }
}

impl TryFrom<String> for TenantName {
    type Error = InvalidTenantName;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        TenantName::parse(&s)
    }
}

impl From<TenantName> for String {
    fn from(t: TenantName) -> String {
        t.0
    }
}

impl PartialEq<str> for TenantName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for TenantName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_parse_and_read_as_themselves() {
        for name in ["acme", "a", "team-42", &"t".repeat(MAX_TENANT_NAME)] {
            let t = TenantName::parse(name).expect(name);
            assert_eq!(t.as_str(), name);
            assert_eq!(t.to_string(), name);
            assert_eq!(format!("{t:?}"), format!("{name:?}"));
            assert_eq!(&*t, name);
            assert_eq!(name.parse::<TenantName>(), Ok(t.clone()));
            assert_eq!(TenantName::try_from(name.to_string()), Ok(t));
        }
    }

    #[test]
    fn invalid_names_are_refused_with_the_reason() {
        let too_long = "t".repeat(MAX_TENANT_NAME + 1);
        for name in [
            "",
            "Acme",
            "-acme",
            "acme-",
            "ac_me",
            "ac.me",
            too_long.as_str(),
        ] {
            let err = TenantName::parse(name).expect_err(name);
            assert_eq!(Some(err.0), check_name(name, MAX_TENANT_NAME), "{name:?}");
        }
    }

    #[test]
    fn the_namespace_of_the_longest_name_is_a_label() {
        let t = TenantName::parse(&"t".repeat(MAX_TENANT_NAME)).unwrap();
        let ns = sluice_core::names::tenant_namespace(&t);
        assert!(check_name(&ns, 63).is_none(), "{ns}");
    }
}
