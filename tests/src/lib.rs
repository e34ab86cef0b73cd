//! What the workspace tests share: the real stack ([`stack`]) and a well-behaved
//! tenant's load ([`load`]). The kubesim cluster with Sluice's CRDs and the `kubectl` runner
//! come from `sluice-testkit` and are re-exported here.

pub mod load;
pub mod stack;

pub use sluice_testkit::{SimCluster, install_crds, kubectl_binary};
