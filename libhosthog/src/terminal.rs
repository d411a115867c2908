//! Text that goes onto other people's terminals.
//!
//! Anything a user typed (a comment, a notice) may be printed on someone
//! else's terminal: at their login, in their session summary, in a listing.
//! An escape sequence in it could move their cursor, retitle their window,
//! or worse, so every display path runs text through [`sanitize`].

use std::borrow::Cow;

/// True for characters that must never reach a terminal as they are: C0 and
/// C1 controls (ESC, CSI, newline, BEL, ...), DEL, line and paragraph
/// separators, and every character that is invisible or changes how the
/// text around it shows: the Unicode format characters (general category
/// Cf: bidi overrides, embeddings, isolates and marks, zero-width joiners,
/// the BOM, Arabic and Egyptian format marks, tags) and the other default
/// ignorable code points (soft hyphen, variation selectors, Hangul fillers,
/// the combining grapheme joiner). Kept as explicit ranges (Unicode 15.1)
/// so the login path links no Unicode tables.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' // soft hyphen
            | '\u{034F}' // combining grapheme joiner
            | '\u{0600}'..='\u{0605}' // Arabic number signs (Cf)
            | '\u{061C}' // Arabic letter mark
            | '\u{06DD}' | '\u{070F}' | '\u{0890}'..='\u{0891}' | '\u{08E2}'
            | '\u{115F}'..='\u{1160}' // Hangul fillers
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}' // Mongolian variation selectors and separator
            | '\u{200B}'..='\u{200F}' // zero-width and directional marks
            | '\u{2028}'..='\u{202E}' // line/paragraph separators, bidi embeddings
            | '\u{2060}'..='\u{206F}' // word joiner, bidi isolates, invisible operators
            | '\u{3164}' // Hangul filler
            | '\u{FE00}'..='\u{FE0F}' // variation selectors
            | '\u{FEFF}'
            | '\u{FFA0}' // halfwidth Hangul filler
            | '\u{FFF0}'..='\u{FFFB}' // unassigned ignorables, interlinear annotation
            | '\u{110BD}' | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}' // Egyptian hieroglyph format controls
            | '\u{1BCA0}'..='\u{1BCA3}' // shorthand format controls
            | '\u{1D173}'..='\u{1D17A}' // musical symbol format controls
            | '\u{E0000}'..='\u{E0FFF}') // tags, variation selectors supplement
}

/// Replaces every unsafe character with `?`; borrows when nothing changes.
///
/// # Example
/// ```
/// assert_eq!(libhosthog::sanitize("run \u{1b}[2Jnow"), "run ?[2Jnow");
/// assert_eq!(libhosthog::sanitize("plain"), "plain");
/// ```
pub fn sanitize(text: &str) -> Cow<'_, str> {
    if text.chars().any(is_unsafe) {
        Cow::Owned(
            text.chars()
                .map(|c| if is_unsafe(c) { '?' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(text)
    }
}

/// How hosthog's own lines begin on a terminal; user text never contains
/// it (see [`user_text`]).
const OWN_PREFIX: &str = "hosthog:";

/// Text a user typed (a comment, a notice, a post, a utmp host name) as
/// it may appear inside one of hosthog's lines on someone else's terminal:
/// sanitized, every run of white space made one space (so padding cannot
/// push a piece of it to the start of a terminal line), at most
/// `max_chars` characters (then `…`), and with `hosthog:` written
/// `hosthog -` so no part of it can pass for a line of hosthog's own (such
/// as "hosthog: message from root (admin)"), wherever the terminal wraps.
///
/// # Example
/// ```
/// assert_eq!(libhosthog::user_text("a  \u{a0} b\nc", 10), "a b?c");
/// assert_eq!(libhosthog::user_text("abcdefgh", 4), "abc…");
/// assert_eq!(libhosthog::user_text("x HostHog: message from root", 40), "x HostHog - message from root");
/// ```
pub fn user_text(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    let mut chars = 0;
    let mut space = false;
    let mut cut = false;
    for c in text.chars() {
        // Controls (newline, tab) are shown as `?` like everywhere else;
        // visible white space (space, no-break space, ...) is collapsed.
        if c.is_whitespace() && !is_unsafe(c) {
            space = !out.is_empty();
            continue;
        }
        let needed = usize::from(space) + 1;
        if chars + needed > max_chars {
            cut = true;
            break;
        }
        if space {
            out.push(' ');
            space = false;
            chars += 1;
        }
        out.push(if is_unsafe(c) { '?' } else { c });
        chars += 1;
    }
    if cut {
        while out.chars().count() >= max_chars.max(1) {
            out.pop();
        }
        out.push('…');
    }
    neutralize_prefix(out)
}

/// `hosthog:` (any case) in user text becomes `hosthog -`.
fn neutralize_prefix(text: String) -> String {
    let lower = text.to_ascii_lowercase();
    if !lower.contains(OWN_PREFIX) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 4);
    let mut rest = text.as_str();
    let mut lower_rest = lower.as_str();
    while let Some(at) = lower_rest.find(OWN_PREFIX) {
        let end = at + OWN_PREFIX.len() - 1;
        out.push_str(&rest[..end]);
        out.push_str(" -");
        rest = &rest[end + 1..];
        lower_rest = &lower_rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_escapes_controls_and_bidi() {
        assert_eq!(sanitize("a\u{1b}]0;pwned\u{7}b"), "a?]0;pwned?b");
        assert_eq!(sanitize("x\u{9b}31my"), "x?31my");
        assert_eq!(sanitize("line\nbreak\r"), "line?break?");
        assert_eq!(sanitize("\u{202E}gnp.exe"), "?gnp.exe");
        assert_eq!(sanitize("del\u{7f}"), "del?");
        assert_eq!(sanitize("Grüße, 研究"), "Grüße, 研究");
    }

    #[test]
    fn user_text_is_one_short_line_that_cannot_pass_for_hosthogs_own() {
        // Padding to the terminal width collapses to one space.
        let forged = format!(
            "hi{}hosthog: message from root (admin): run rm",
            " ".repeat(200)
        );
        assert_eq!(
            user_text(&forged, 200),
            "hi hosthog - message from root (admin): run rm"
        );
        assert_eq!(user_text("HOSTHOG:x hosthog:", 50), "HOSTHOG -x hosthog -");
        assert_eq!(user_text("  lead and trail  ", 50), "lead and trail");
        assert_eq!(user_text("a\u{1b}[2Jb", 50), "a?[2Jb");
        assert_eq!(user_text(&"é".repeat(600), 100).chars().count(), 100);
        assert!(user_text(&"é".repeat(600), 100).ends_with('…'));
        assert_eq!(user_text("", 10), "");
    }

    #[test]
    fn replaces_invisible_and_format_characters() {
        // One of each kind: Cf and default-ignorable code points that would
        // hide or reorder text (bidi isolates, tags, fillers, selectors).
        for c in [
            '\u{00AD}',
            '\u{034F}',
            '\u{061C}',
            '\u{0600}',
            '\u{115F}',
            '\u{180E}',
            '\u{200B}',
            '\u{200D}',
            '\u{200E}',
            '\u{2066}',
            '\u{2069}',
            '\u{3164}',
            '\u{FE0F}',
            '\u{FEFF}',
            '\u{FFA0}',
            '\u{FFF9}',
            '\u{13430}',
            '\u{1BCA0}',
            '\u{1D173}',
            '\u{E0001}',
            '\u{E0041}',
            '\u{E0100}',
        ] {
            assert_eq!(sanitize(&format!("a{c}b")), "a?b", "U+{:04X}", c as u32);
        }
        // Visible neighbours stay.
        assert_eq!(
            sanitize("a\u{00AC}\u{2010}\u{FE10}b"),
            "a\u{00AC}\u{2010}\u{FE10}b"
        );
    }
}
