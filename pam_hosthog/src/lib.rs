//! pam_hosthog: the PAM module (see the pam_hosthog issue).
