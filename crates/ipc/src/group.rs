//! NanoClaw group names and the host's map from groups to runtimes.
//!
//! The group of a task is the name of the folder it was found in, never a
//! value from the payload.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// The trusted admin group: it sees every runtime's findings.
pub const MAIN_GROUP: &str = "main";

/// The longest group name NanoClaw allows.
pub const MAX_GROUP_LEN: usize = 64;

/// A NanoClaw group folder name: `^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct GroupName(String);

/// A folder name that is not a valid group name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid group name: expected 1 to 64 characters from A-Z a-z 0-9 _ -, starting with a letter or digit"
)]
pub struct InvalidGroupName;

impl GroupName {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<GroupName, InvalidGroupName> {
        let name = name.into();
        if is_valid_group_name(&name) {
            Ok(GroupName(name))
        } else {
            Err(InvalidGroupName)
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the trusted [`MAIN_GROUP`].
    pub fn is_main(&self) -> bool {
        self.0 == MAIN_GROUP
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `name` is a valid group name.
pub fn is_valid_group_name(name: &str) -> bool {
    match name.as_bytes().split_first() {
        Some((first, rest)) => {
            first.is_ascii_alphanumeric()
                && rest.len() < MAX_GROUP_LEN
                && rest
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        }
        None => false,
    }
}

/// Which runtimes belong to which group. Supplied by the host from its
/// configuration. A group that is not in the map has no runtimes: it may ask
/// for status and check-config, and sees no findings (unless it is `main`,
/// which sees all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupMap {
    groups: BTreeMap<GroupName, Vec<String>>,
}

impl GroupMap {
    /// An empty map.
    pub fn new() -> GroupMap {
        GroupMap::default()
    }

    /// Maps `runtime` to `group`, in addition to what is there.
    pub fn insert(&mut self, group: GroupName, runtime: impl Into<String>) {
        let runtime = runtime.into();
        let runtimes = self.groups.entry(group).or_default();
        if !runtimes.contains(&runtime) {
            runtimes.push(runtime);
        }
    }

    /// The map with `runtime` added to `group`.
    pub fn with(mut self, group: GroupName, runtime: impl Into<String>) -> GroupMap {
        self.insert(group, runtime);
        self
    }

    /// The runtimes mapped to `group`, in insertion order.
    pub fn runtimes(&self, group: &GroupName) -> &[String] {
        self.groups.get(group).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every mapped group with its runtimes.
    pub fn iter(&self) -> impl Iterator<Item = (&GroupName, &[String])> {
        self.groups.iter().map(|(g, r)| (g, r.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(name: &str, valid: bool) {
        assert_eq!(is_valid_group_name(name), valid, "{name:?}");
    }

    #[test]
    fn group_names_follow_the_pattern() {
        check("main", true);
        check("team-a_1", true);
        check("A", true);
        check(&"g".repeat(64), true);
        check(&"g".repeat(65), false);
        check("", false);
        check("..", false);
        check(".", false);
        check(".main", false);
        check("-a", false);
        check("_a", false);
        check("a.b", false);
        check("a/b", false);
        check("a b", false);
        check("ä", false);
    }

    #[test]
    fn main_is_the_only_main() {
        assert!(GroupName::new("main").unwrap().is_main());
        assert!(!GroupName::new("Main").unwrap().is_main());
        assert!(!GroupName::new("main2").unwrap().is_main());
    }

    #[test]
    fn map_keeps_runtimes_per_group_without_duplicates() {
        let a = GroupName::new("a").unwrap();
        let map = GroupMap::new()
            .with(a.clone(), "rt-1")
            .with(a.clone(), "rt-2")
            .with(a.clone(), "rt-1");
        assert_eq!(map.runtimes(&a), ["rt-1", "rt-2"]);
        assert!(map.runtimes(&GroupName::new("b").unwrap()).is_empty());
    }
}
