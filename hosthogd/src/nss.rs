//! Users and groups through NSS (`getpwuid_r`, `getgrnam_r`,
//! `getgrouplist`). The daemon may resolve names; the PAM module never does.

use std::ffi::{CStr, CString};
use std::sync::Mutex;

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// `getpwent` walks a process-wide cursor: one walker at a time.
static PWENT: Mutex<()> = Mutex::new(());

const START_BUF: usize = 4096;
const MAX_BUF: usize = 1 << 20;

/// Calls a `get*_r` function, growing the buffer on `ERANGE`.
fn with_buffer<T>(
    mut call: impl FnMut(&mut [libc::c_char]) -> (libc::c_int, Option<T>),
) -> Option<T> {
    let mut size = START_BUF;
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        let (rc, out) = call(&mut buf);
        if rc == libc::ERANGE && size < MAX_BUF {
            size *= 4;
            continue;
        }
        return out;
    }
}

/// # Safety
/// `pw` must point to a `passwd` filled by a successful `getpw*` call whose
/// buffer is still alive.
unsafe fn account(pw: *const libc::passwd) -> Option<Account> {
    // SAFETY: per this function's contract `pw` and its strings are valid.
    let (name, uid, gid) = unsafe { (CStr::from_ptr((*pw).pw_name), (*pw).pw_uid, (*pw).pw_gid) };
    Some(Account {
        name: name.to_str().ok()?.to_owned(),
        uid,
        gid,
    })
}

/// The account with this uid, if any.
pub fn user_by_uid(uid: u32) -> Option<Account> {
    with_buffer(|buf| {
        // SAFETY: an all-zero passwd is a valid value to be overwritten.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; buf's length is passed.
        let rc =
            unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut result) };
        if rc != 0 || result.is_null() {
            return (rc, None);
        }
        // SAFETY: getpwuid_r succeeded; pw's strings live in buf, alive here.
        (0, unsafe { account(&pw) })
    })
}

/// The account with this name, if any.
pub fn user_by_name(name: &str) -> Option<Account> {
    let cname = CString::new(name).ok()?;
    with_buffer(|buf| {
        // SAFETY: an all-zero passwd is a valid value to be overwritten.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; buf's length is passed.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pw,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc != 0 || result.is_null() {
            return (rc, None);
        }
        // SAFETY: getpwnam_r succeeded; pw's strings live in buf, alive here.
        (0, unsafe { account(&pw) })
    })
}

/// A group's id and its listed (supplementary) members, if it exists.
pub fn group_by_name(name: &str) -> Option<(u32, Vec<String>)> {
    let cname = CString::new(name).ok()?;
    with_buffer(|buf| {
        // SAFETY: an all-zero group is a valid value to be overwritten.
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; buf's length is passed.
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut gr,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc != 0 || result.is_null() {
            return (rc, None);
        }
        let mut members = Vec::new();
        let mut p = gr.gr_mem;
        // SAFETY: gr_mem is a NULL-terminated array of C strings in buf.
        unsafe {
            while !p.is_null() && !(*p).is_null() {
                if let Ok(m) = CStr::from_ptr(*p).to_str() {
                    members.push(m.to_owned());
                }
                p = p.add(1);
            }
        }
        (0, Some((gr.gr_gid, members)))
    })
}

/// True if `account` belongs to `group` (as its primary group or a listed
/// member), by `getgrouplist`.
pub fn in_group(account: &Account, group: &str) -> bool {
    let Some((gid, _)) = group_by_name(group) else {
        return false;
    };
    if account.gid == gid {
        return true;
    }
    let Ok(cname) = CString::new(account.name.as_str()) else {
        return false;
    };
    let mut n: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let mut count = n;
        // SAFETY: groups has room for `count` entries; cname is a C string.
        let rc = unsafe {
            libc::getgrouplist(cname.as_ptr(), account.gid, groups.as_mut_ptr(), &mut count)
        };
        if rc >= 0 {
            return groups.iter().take(count.max(0) as usize).any(|g| *g == gid);
        }
        if count <= n || count > 65_536 {
            return false;
        }
        n = count;
    }
}

/// Every user in `group`: its listed members and the accounts whose primary
/// group it is. `None` if there is no such group.
pub fn group_users(group: &str) -> Option<Vec<String>> {
    let (gid, mut users) = group_by_name(group)?;
    // Primary-group members are not listed in gr_mem; walk passwd for them.
    let _guard = PWENT.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: setpwent/getpwent/endpwent use a process-wide cursor, which
    // the PWENT lock makes ours; each entry is copied before the next call.
    unsafe {
        libc::setpwent();
        loop {
            let pw = libc::getpwent();
            if pw.is_null() {
                break;
            }
            if (*pw).pw_gid == gid
                && let Some(a) = account(pw)
            {
                users.push(a.name);
            }
        }
        libc::endpwent();
    }
    users.sort();
    users.dedup();
    Some(users)
}
