//! Feeds arbitrary text to hosthogd's configuration parser
//! (`hosthogd::config::parse`). It must never panic; an error must name the
//! file and be one line; a configuration that parses must hold only valid
//! user names and positive durations.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match hosthogd::config::parse(text, Path::new("hosthog.toml")) {
        Ok(config) => {
            for name in config
                .admin_group
                .iter()
                .chain(&config.exempt_users)
                .chain(&config.exempt_groups)
            {
                assert!(libhosthog::validate_user_name(name).is_ok(), "{name:?}");
            }
            for d in [config.limits.max_duration, config.limits.max_ahead]
                .into_iter()
                .flatten()
            {
                assert!(d > 0, "{d}");
            }
            assert_ne!(config.limits.max_open_per_user, Some(0));
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with("hosthog.toml"), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }
});
