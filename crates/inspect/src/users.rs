//! User names for uids, from the system's user database.
//!
//! `getpwuid_r` (through `nix`) rather than a parser of `/etc/passwd`, so that
//! users from other NSS sources (LDAP, systemd's dynamic users) have their
//! names too, as `ls -l` and `netstat -e` show them. Each uid is looked up
//! once per call: a server has thousands of sockets but few distinct owners.

use nix::unistd::{Uid, User};
use std::collections::HashMap;

/// A per-call cache of uid → name (`None`: the database has no such user).
#[derive(Debug, Default)]
pub(crate) struct UserNames {
    cache: HashMap<u32, Option<String>>,
    /// The last uid asked for and its name: sockets come in runs of one uid.
    last: Option<(u32, Option<String>)>,
}

impl UserNames {
    pub(crate) fn name(&mut self, uid: u32) -> Option<String> {
        if let Some((last, name)) = &self.last {
            if *last == uid {
                return name.clone();
            }
        }
        let name = self
            .cache
            .entry(uid)
            .or_insert_with(|| {
                User::from_uid(Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .clone();
        self.last = Some((uid, name.clone()));
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_users() {
        let mut names = UserNames::default();
        assert_eq!(names.name(0).as_deref(), Some("root"));
        // Cached: the second answer is the same.
        assert_eq!(names.name(0).as_deref(), Some("root"));
        // Debian's nobody.
        assert_eq!(names.name(65534).as_deref(), Some("nobody"));
        // A uid no database has.
        assert_eq!(names.name(3_999_999_999), None);
        // Back to a cached one.
        assert_eq!(names.name(0).as_deref(), Some("root"));
        assert_eq!(names.name(65534).as_deref(), Some("nobody"));
    }
}
