//! User text on the page and in feeds: names and comments come from
//! users, so before display every control character and every bidi
//! control (which could make "alice" read as "ecila", or move text across
//! the line) is replaced by a visible U+FFFD. HTML escaping itself is the
//! templates' (askama escapes every `{{ }}` by default).

/// The Unicode bidi controls: embeddings, overrides, isolates and marks.
pub fn is_bidi(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// `text` safe to show: bidi and control characters (newlines and tabs
/// included) become U+FFFD.
pub fn display(text: &str) -> String {
    text.chars()
        .map(|c| {
            if is_bidi(c) || c.is_control() {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_and_controls_are_replaced() {
        assert_eq!(
            display("a\u{202E}b\nc\u{2067}d"),
            "a\u{FFFD}b\u{FFFD}c\u{FFFD}d"
        );
        assert_eq!(display("<script>ok"), "<script>ok");
    }
}
