//! etcd versions and the rule for moving between them live in [`crate::api::versions`]; the
//! planner uses them as they are.

pub use crate::api::versions::{ParseVersionError, Version, VersionSkew};
