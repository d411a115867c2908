//! PAM service texts for `/etc/pam.d/<service>` inside the namespace, built from stock
//! Linux-PAM modules. They stand in for the hosthog module while proving the harness, and
//! give real tests their auth line.

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
