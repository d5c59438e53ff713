//! OS users from the password database: who the connection defaults to (libpq's rule) and
//! who a restore test's server runs as.

use std::ffi::CStr;

/// An OS user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OsUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Which entry of the password database to look up.
pub enum UserKey<'a> {
    Name(&'a CStr),
    Uid(u32),
}

/// The password database's entry for a user name or uid.
pub fn lookup(key: UserKey) -> Option<OsUser> {
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: a zeroed passwd is a valid value for getpw*_r to overwrite.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call, buf.len() is buf's size, and the strings
        // entry points to live in buf, which outlives their use below.
        let rc = unsafe {
            match key {
                UserKey::Name(name) => libc::getpwnam_r(
                    name.as_ptr(),
                    &mut entry,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut found,
                ),
                UserKey::Uid(uid) => {
                    libc::getpwuid_r(uid, &mut entry, buf.as_mut_ptr(), buf.len(), &mut found)
                }
            }
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || found.is_null() || entry.pw_name.is_null() {
            return None;
        }
        // SAFETY: pw_name is a NUL-terminated string inside buf.
        let name = unsafe { CStr::from_ptr(entry.pw_name) };
        return Some(OsUser {
            // A name that is not UTF-8 could not be given back to PostgreSQL or the OS intact.
            name: name.to_str().ok()?.to_owned(),
            uid: entry.pw_uid,
            gid: entry.pw_gid,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_by_name_and_by_uid() {
        let by_uid = lookup(UserKey::Uid(0)).expect("uid 0 has an entry");
        assert_eq!((by_uid.name.as_str(), by_uid.uid), ("root", 0));
        assert_eq!(lookup(UserKey::Name(c"root")), Some(by_uid));
        assert_eq!(lookup(UserKey::Name(c"no-such-user-pgcairn")), None);
    }
}
