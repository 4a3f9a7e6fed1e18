//! The last guard against forged log lines: every text log line is written through
//! [`EscapingWriter`], which escapes control characters (newlines, carriage returns, ESC and
//! the rest of C0 and C1, DEL) anywhere but at the line's end. A string that came from outside
//! (a channel id, a method name, a token claim, a close reason) can therefore never start a
//! line of its own or move the cursor of a terminal, whatever field or message it reached.
//!
//! Call sites still log outside strings with `?field` (Debug, quoted and escaped) so they read
//! unambiguously; this writer is what makes a missed one harmless. The journal format needs no
//! escaping: each tracing field is its own journal field (`tracing-journald`).

use std::io::{self, Write};
use tracing_subscriber::fmt::MakeWriter;

/// Escapes one formatted log line: control characters become `\n`, `\r`, `\t`, `\e` or
/// `\u{XX}`; a single trailing `\n` (the line's end) is kept. Returns bytes to write.
pub fn escape_line(line: &[u8]) -> Vec<u8> {
    let (body, end) = match line.split_last() {
        Some((b'\n', body)) => (body, true),
        _ => (line, false),
    };
    let text = String::from_utf8_lossy(body);
    let mut out = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{1b}' => out.push_str("\\e"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:02x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    if end {
        out.push('\n');
    }
    out.into_bytes()
}

/// A writer that escapes each line it is given (see [`escape_line`]). tracing's text
/// formatter writes one whole event per `write_all`, which reaches [`Write::write`] once.
#[derive(Debug)]
pub struct EscapingWriter<W>(pub W);

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(&escape_line(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// [`MakeWriter`] for [`EscapingWriter`] around another `MakeWriter`.
#[derive(Debug, Clone)]
pub struct MakeEscaping<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for MakeEscaping<M> {
    type Writer = EscapingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapingWriter(self.0.make_writer())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        String::from_utf8(escape_line(s.as_bytes())).unwrap()
    }

    #[test]
    fn control_characters_never_break_or_start_a_line() {
        assert_eq!(
            esc("INFO channel=x\nFORGED-LOG-LINE ok\n"),
            "INFO channel=x\\nFORGED-LOG-LINE ok\n"
        );
        assert_eq!(esc("a\r\x1b[2Jb\n"), "a\\r\\e[2Jb\n");
        assert_eq!(esc("a\u{7}\u{7f}\u{85}b"), "a\\u{07}\\u{7f}\\u{85}b");
        assert_eq!(esc("tab\there\n"), "tab\\there\n");
        assert_eq!(esc("plain ünïcode ✓\n"), "plain ünïcode ✓\n");
        // Only the final newline survives; no output byte is a control byte but that one.
        let out = escape_line(b"x\n\n\x00y\n");
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
        assert!(out[..out.len() - 1]
            .iter()
            .all(|b| *b >= 0x20 && *b != 0x7f));
    }

    #[test]
    fn writer_reports_the_whole_buffer_written() {
        let mut w = EscapingWriter(Vec::new());
        w.write_all(b"one\ntwo\n").unwrap();
        assert_eq!(w.0, b"one\\ntwo\n");
    }
}
