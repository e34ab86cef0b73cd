//! Sluice's domain rules, with no I/O and no Kubernetes dependency: what things are called
//! (namespaces, routes, labels, broker subjects), quota arithmetic, the CEL checks shared by the
//! API and the operator, and the route configuration the operator renders for `sluice-worker`.

pub mod egress;
pub mod expr;
pub mod key;
pub mod names;
pub mod quota;
pub mod route;
pub mod subjects;
