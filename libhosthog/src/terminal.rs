//! Text that goes onto other people's terminals.
//!
//! Anything a user typed (a comment, a notice) may be printed on someone
//! else's terminal: at their login, in their session summary, in a listing.
//! An escape sequence in it could move their cursor, retitle their window,
//! or worse, so every display path runs text through [`sanitize`].

use std::borrow::Cow;

/// True for characters that must never reach a terminal as they are: C0 and
/// C1 controls (ESC, CSI, newline, BEL, ...), DEL, and the Unicode format
/// characters that reorder or hide text (bidi overrides and isolates,
/// zero-width joiners, the BOM).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}' // zero-width and directional marks
            | '\u{2028}'..='\u{202E}' // line/paragraph separators, bidi embeddings
            | '\u{2060}'..='\u{206F}' // word joiner, bidi isolates, invisible operators
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}')
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
}
