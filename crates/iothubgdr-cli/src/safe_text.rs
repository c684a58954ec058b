//! Server text made safe for a terminal.
//!
//! Much of what the client prints came from an IoT Hub through the server: device ids,
//! tags, error messages, display names. A hostile hub can put terminal escape sequences,
//! carriage returns or bidi overrides in them to rewrite what the user sees. Every such
//! character is printed as a visible `\uXXXX` escape instead (the JSON escape, so JSON
//! output stays valid JSON).

use std::borrow::Cow;
use std::fmt::Write;

/// Characters a terminal would act on instead of showing: C0 and C1 controls and DEL, and
/// the bidirectional overrides and isolates that reorder a line.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape(text: &str, keep_line_breaks: bool) -> Cow<'_, str> {
    let keep = |c: char| keep_line_breaks && matches!(c, '\n' | '\t');
    if !text.chars().any(|c| is_unsafe(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe(c) && !keep(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One value (a table cell, a field): every unsafe character escaped, line breaks too, so a
/// value cannot fake another row.
pub fn value(text: &str) -> Cow<'_, str> {
    escape(text, false)
}

/// A whole block of output: unsafe characters escaped, line breaks and tabs kept.
pub fn block(text: &str) -> Cow<'_, str> {
    escape(text, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_untouched() {
        assert!(matches!(value("device-42 ü ✓"), Cow::Borrowed(_)));
        assert!(matches!(block("a\n\tb\n"), Cow::Borrowed(_)));
    }

    #[test]
    fn escapes_controls_and_bidi_overrides() {
        let hostile = "dev\u{1b}[2J\r\u{7f}\u{9b}31m\u{202e}fdp.exe\nnext";
        assert_eq!(
            value(hostile),
            "dev\\u001b[2J\\u000d\\u007f\\u009b31m\\u202efdp.exe\\u000anext"
        );
        assert_eq!(
            block(hostile),
            "dev\\u001b[2J\\u000d\\u007f\\u009b31m\\u202efdp.exe\nnext"
        );
    }

    #[test]
    fn escaped_json_stays_json() {
        let json =
            serde_json::to_string(&serde_json::json!({"id": "a\u{85}\u{202e}b\u{1b}"})).unwrap();
        let safe = block(&json);
        assert!(!safe.chars().any(|c| is_unsafe(c) && c != '\n'));
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["id"], "a\u{85}\u{202e}b\u{1b}");
    }
}
