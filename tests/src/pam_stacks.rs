//! PAM service texts for `/etc/pam.d/<service>` inside the namespace, built from stock
//! Linux-PAM modules. They stand in for the hosthog module while proving the harness, and
//! give real tests their auth line; [`hosthog_stack`] and [`debian_common_account_primary_first`] place the
//! real module.

use std::path::Path;

/// Password check against the fake `/etc/shadow`, without pam_unix's failure delay.
pub const UNIX_AUTH: &str = "auth     required   pam_unix.so nodelay\n";

/// The password group: changing passwords is never part of a test.
pub const NO_PASSWORD_CHANGE: &str = "password required   pam_deny.so\n";

/// `pam_echo.so` prints its arguments joined by spaces; `%` starts an expansion
/// (`%u` user, `%s` service, ...), so keep placeholder messages free of it.
fn echo_line(group: &str, control: &str, text: &str) -> String {
    assert!(!text.contains('%'), "pam_echo would expand % in {text:?}");
    assert!(!text.contains('\n'), "one line per pam_echo: {text:?}");
    format!("{group:<8} {control:<10} pam_echo.so {text}\n")
}

/// Refuses every user in the account phase with `message` (shown as PAM_TEXT_INFO by
/// `pam_echo`), the way the hosthog module refuses with its PAM_ERROR_MSG; the session
/// phase prints `session_text`.
pub fn refusing(message: &str, session_text: &str) -> String {
    format!(
        "{UNIX_AUTH}{}account  required   pam_deny.so\n{}{NO_PASSWORD_CHANGE}",
        echo_line("account", "requisite", message),
        echo_line("session", "required", session_text),
    )
}

/// Admits every user whose password or key is right; the session phase prints
/// `session_text`.
pub fn admitting(session_text: &str) -> String {
    format!(
        "{UNIX_AUTH}account  required   pam_permit.so\n{}{NO_PASSWORD_CHANGE}",
        echo_line("session", "required", session_text),
    )
}

/// Admits every user, but prints `account_text` in the account phase (where OpenSSH shows
/// it even on success) and `session_text` in the session phase.
pub fn admitting_with_account_text(account_text: &str, session_text: &str) -> String {
    format!(
        "{UNIX_AUTH}{}account  required   pam_permit.so\n{}{NO_PASSWORD_CHANGE}",
        echo_line("account", "required", account_text),
        echo_line("session", "required", session_text),
    )
}

/// The hosthog module's line: `GROUP CONTROL MODULE table=TABLE [ARGS]`.
pub fn hosthog_line(group: &str, control: &str, module: &Path, table: &Path, args: &str) -> String {
    let mut line = format!(
        "{group:<8} {control:<10} {} table={}",
        module.display(),
        table.display()
    );
    if !args.is_empty() {
        line += " ";
        line += args;
    }
    line + "\n"
}

/// A stack for `sshd` or `login` with the module where an admin puts it: pam_unix for
/// passwords, accounts and sessions; the module `required` in the account group after
/// pam_unix (it answers PAM_IGNORE or PAM_PERM_DENIED, never success), `optional` in the
/// session group (the summary; PAM_IGNORE).
pub fn hosthog_stack(module: &Path, table: &Path) -> String {
    format!(
        "{UNIX_AUTH}\
         account  required   pam_unix.so\n\
         {}\
         {NO_PASSWORD_CHANGE}\
         session  required   pam_unix.so\n\
         {}",
        hosthog_line("account", "required", module, table, ""),
        hosthog_line("session", "optional", module, table, ""),
    )
}

/// Debian's `common-account` as `pam-auth-update` generates it with the module's profile
/// in the "Primary" block at a higher priority than pam_unix (pam.d/pam-configs/hosthog):
/// `primary_first` (the module's line), then pam_unix jumping over `pam_deny` on success,
/// `pam_deny`, `pam_permit`. pam-auth-update counts the module's line but it has no jump,
/// so pam_unix's `success=1` still lands on `pam_permit`.
pub fn debian_common_account_primary_first(primary_first: &str) -> String {
    format!(
        "# here are the per-package modules (the \"Primary\" block)\n\
         {primary_first}\
         account\t[success=1 new_authtok_reqd=done default=ignore]\tpam_unix.so\n\
         # here's the fallback if no module succeeds\n\
         account\trequisite\t\t\tpam_deny.so\n\
         account\trequired\t\t\tpam_permit.so\n\
         # end of pam-auth-update config\n"
    )
}

/// A Debian-style service file: its own auth line, `@include common-account`, and the
/// session group of [`hosthog_stack`].
pub fn including_common_account(module: &Path, table: &Path) -> String {
    format!(
        "{UNIX_AUTH}\
         @include common-account\n\
         {NO_PASSWORD_CHANGE}\
         session  required   pam_unix.so\n\
         {}",
        hosthog_line("session", "optional", module, table, ""),
    )
}
