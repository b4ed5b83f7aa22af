//! Docker's `--user` resolved against a container's `/etc/passwd` and `/etc/group`.
//!
//! Both files come from the image, so they are untrusted text: lines that do not
//! parse are skipped, numbers out of range are refused, and nothing here panics.

/// Who a process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// From the passwd entry; `/` when the user has none (as Docker does).
    pub home: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    #[error("invalid user spec {0:?}")]
    Invalid(String),
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || f[0].is_empty() {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

fn group_entries(group: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 || f[0].is_empty() {
            return None;
        }
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f[3].split(',').filter(|m| !m.is_empty()).collect(),
        })
    })
}

/// Resolves `spec` (`""`, `name`, `uid`, `name:group`, `uid:gid`, ...) the way Docker
/// does: a numeric uid need not exist in passwd; a name must.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<Identity, UserError> {
    if spec.len() > 256 || spec.matches(':').count() > 1 {
        return Err(UserError::Invalid(spec.chars().take(64).collect()));
    }
    let (user, group_spec) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let entry = passwd_entries(passwd).find(|e| e.name == user);
    let (uid, mut gid, home, name) = match (entry, user.parse::<u32>()) {
        (Some(e), _) => (e.uid, e.gid, e.home.to_owned(), Some(e.name)),
        (None, Ok(uid)) => match passwd_entries(passwd).find(|e| e.uid == uid) {
            Some(e) => (uid, e.gid, e.home.to_owned(), Some(e.name)),
            None => (uid, 0, "/".to_owned(), None),
        },
        (None, Err(_)) => return Err(UserError::NoUser(user.to_owned())),
    };
    if let Some(g) = group_spec.filter(|g| !g.is_empty()) {
        gid = match group_entries(group).find(|e| e.name == g) {
            Some(e) => e.gid,
            None => g.parse().map_err(|_| UserError::NoGroup(g.to_owned()))?,
        };
    }
    let mut groups = vec![gid];
    if group_spec.is_none() {
        if let Some(name) = name {
            for e in group_entries(group).filter(|e| e.members.contains(&name)) {
                if !groups.contains(&e.gid) {
                    groups.push(e.gid);
                }
            }
        }
    }
    let home = if home.is_empty() { "/".to_owned() } else { home };
    Ok(Identity { uid, gid, groups, home })
}

/// `--group-add`: each a group name from `group` or a number, added to the
/// identity's supplementary groups once.
pub fn add_groups(mut identity: Identity, names: &[String], group: &str) -> Result<Identity, UserError> {
    for name in names {
        let gid = match group_entries(group).find(|e| e.name == name.as_str()) {
            Some(e) => e.gid,
            None => name
                .parse()
                .map_err(|_| UserError::NoGroup(name.chars().take(64).collect()))?,
        };
        if !identity.groups.contains(&gid) {
            identity.groups.push(gid);
        }
    }
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
        app:x:1000:1000::/home/app:/bin/sh\nbroken line\nbad:x:notanumber:1::/:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:app,root\napp:x:1000:\nstaff:x:50:app\n";

    #[test]
    fn added_groups_resolve_by_name_or_number() {
        let id = resolve("nobody", PASSWD, GROUP).unwrap();
        let id = add_groups(id, &["staff".into(), "4000".into(), "staff".into()], GROUP).unwrap();
        assert_eq!(id.groups, vec![65534, 50, 4000]);
        let err = add_groups(resolve("", PASSWD, GROUP).unwrap(), &["ghost".into()], GROUP).unwrap_err();
        assert_eq!(err, UserError::NoGroup("ghost".into()));
    }

    #[test]
    fn empty_spec_is_root_with_roots_groups() {
        let id = resolve("", PASSWD, GROUP).unwrap();
        assert_eq!((id.uid, id.gid, id.home.as_str()), (0, 0, "/root"));
        assert_eq!(id.groups, vec![0, 10]);
    }

    #[test]
    fn names_resolve_with_supplementary_groups() {
        let id = resolve("app", PASSWD, GROUP).unwrap();
        assert_eq!((id.uid, id.gid), (1000, 1000));
        assert_eq!(id.groups, vec![1000, 10, 50]);
        assert_eq!(id.home, "/home/app");
    }

    #[test]
    fn numeric_uid_need_not_exist() {
        let id = resolve("4242", PASSWD, GROUP).unwrap();
        assert_eq!((id.uid, id.gid, id.home.as_str()), (4242, 0, "/"));
        let id = resolve("1000:50", PASSWD, GROUP).unwrap();
        assert_eq!((id.uid, id.gid), (1000, 50));
        assert_eq!(id.groups, vec![50]);
    }

    #[test]
    fn group_by_name() {
        let id = resolve("nobody:wheel", PASSWD, GROUP).unwrap();
        assert_eq!((id.uid, id.gid), (65534, 10));
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(resolve("ghost", PASSWD, GROUP), Err(UserError::NoUser("ghost".into())));
        assert_eq!(
            resolve("app:ghosts", PASSWD, GROUP),
            Err(UserError::NoGroup("ghosts".into()))
        );
        assert!(matches!(resolve("a:b:c", PASSWD, GROUP), Err(UserError::Invalid(_))));
        assert!(matches!(
            resolve(&"x".repeat(100_000), PASSWD, GROUP),
            Err(UserError::Invalid(_))
        ));
        assert!(matches!(
            resolve("99999999999", PASSWD, GROUP),
            Err(UserError::NoUser(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(spec in ".{0,40}", passwd in ".{0,200}", group in ".{0,200}") {
            let _ = resolve(&spec, &passwd, &group);
        }
    }
}
