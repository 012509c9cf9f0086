//! How errors and input are shown to people: one line, every cause once, and nothing taken from a
//! log line or a file name reaches a terminal raw.

use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// An error and its causes on one line, each message once (sqlx repeats a cause in its message).
pub fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let message = without_source_position(cause.to_string());
        if line.contains(&message) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&message);
    }
    escaped(line.replace('\n', " ").as_bytes())
}

/// PostgreSQL's errors end in the line of the server's C source that raised them
/// (`... does not exist at line 768`): noise to a user.
fn without_source_position(mut message: String) -> String {
    if let Some(at) = message.rfind(" at line ")
        && message[at + 9..].bytes().all(|b| b.is_ascii_digit())
        && message.len() > at + 9
    {
        message.truncate(at);
    }
    message
}

/// `bytes` as text a terminal shows as it is: invalid UTF-8 as `\xHH`, control and invisible
/// format characters (ESC, BEL, NUL, newlines, U+202E...) as `\n`, `\t`, `\r` or `\u{HHHH}`.
/// Text that is already safe is unchanged, so escaping twice changes nothing.
pub fn escaped(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() || crate::record::is_format(c) => {
                    let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}

/// A path as people see it: its bytes, [`escaped`].
pub fn shown_path(path: &Path) -> String {
    escaped(path.as_os_str().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::{escaped, one_line};

    #[test]
    fn nothing_that_steers_a_terminal_is_shown_raw() {
        assert_eq!(escaped(b"cust_1 /x 200"), "cust_1 /x 200");
        assert_eq!(escaped("café".as_bytes()), "café");
        assert_eq!(
            escaped(b"\x1b[31mred\x07\0"),
            "\\u{001b}[31mred\\u{0007}\\u{0000}"
        );
        assert_eq!(escaped(b"n\nerror: forged.log"), "n\\nerror: forged.log");
        assert_eq!(escaped(b"x\xff.log"), "x\\xff.log");
        assert_eq!(escaped("a\u{202e}b".as_bytes()), "a\\u{202e}b");
        let once = escaped(b"\x1bx\xff\n");
        assert_eq!(
            escaped(once.as_bytes()),
            once,
            "escaping twice changes nothing"
        );
        assert_eq!(escaped("\u{9b}".as_bytes()), "\\u{009b}", "C1 controls too");
    }

    #[test]
    fn a_cause_repeated_in_its_context_is_shown_once() {
        let error = anyhow::anyhow!("deadlock detected").context("committing: deadlock detected");
        assert_eq!(one_line(&error), "committing: deadlock detected");
        let error = anyhow::anyhow!("refused\nby peer").context("connecting");
        assert_eq!(one_line(&error), "connecting: refused by peer");
        let error = anyhow::anyhow!("role \"x\" does not exist at line 768").context("connecting");
        assert_eq!(one_line(&error), "connecting: role \"x\" does not exist");
    }
}
