//! The writer of one WebSocket session: drains the session's bounded outbound queue onto the
//! socket, sends the server's WebSocket pings, and closes the connection when the session
//! cannot keep up.
//!
//! - Every write has a deadline (`server.write_timeout_ms`): a peer that stops reading ends the
//!   session instead of holding a task and its queue forever.
//! - When a message did not fit the queue (`server.outbound_queue`), the writer drops what is
//!   queued and closes with 1008 (RFC 6455 "policy violation") and a reason.
//! - Close reasons longer than a close frame holds (123 bytes, RFC 6455 section 5.5) are cut at
//!   a UTF-8 boundary; the whole reason goes first in a `session.closing` notification.

use super::protocol::{close, notification_frame};
use crate::switchboard::{Outbound, OutboundRx};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::SinkExt;
use serde_json::json;
use std::time::Duration;

/// Longest close reason a close frame carries, bytes (125-byte control payload minus the
/// 2-byte code; RFC 6455 section 5.5).
pub const MAX_CLOSE_REASON_BYTES: usize = 123;

/// How the writer behaves.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Interval of server pings (`server.ping_interval_ms`).
    pub ping_every: Duration,
    /// Deadline of one write (`server.write_timeout_ms`).
    pub write_timeout: Duration,
}

/// Why the writer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriterEnd {
    /// The queue closed (the session ended first).
    QueueClosed,
    /// It sent a close frame with this code and reason, as asked (an admin disconnect, a
    /// ban, a device revoke, shutdown).
    Closed(u16, String),
    /// The session fell behind: its queue overflowed; closed with 1008.
    Overflow,
    /// A write did not complete within the write timeout.
    WriteTimeout,
    /// A write failed (the connection is gone).
    WriteFailed,
}

impl WriterEnd {
    /// A short reason for logs and the audit log.
    pub fn reason(&self) -> &str {
        match self {
            Self::QueueClosed => "session ended",
            Self::Closed(_, reason) => reason,
            Self::Overflow => "not keeping up: outbound queue full",
            Self::WriteTimeout => "not keeping up: write timed out",
            Self::WriteFailed => "connection lost while writing",
        }
    }
}

/// `reason` cut to at most [`MAX_CLOSE_REASON_BYTES`] at a UTF-8 boundary, and whether it
/// was cut.
pub fn close_reason(reason: &str) -> (&str, bool) {
    if reason.len() <= MAX_CLOSE_REASON_BYTES {
        return (reason, false);
    }
    let mut end = MAX_CLOSE_REASON_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    (&reason[..end], true)
}

/// The frames that close a session with `code` and `reason`: a `session.closing`
/// notification with the whole reason when it does not fit the close frame, then the close.
pub fn close_frames(code: u16, reason: &str) -> Vec<Message> {
    let (cut, was_cut) = close_reason(reason);
    let mut frames = Vec::with_capacity(2);
    if was_cut {
        let note = notification_frame("session.closing", json!({"code": code, "reason": reason}));
        frames.push(Message::Text(note.into()));
    }
    frames.push(Message::Close(Some(CloseFrame {
        code,
        reason: cut.to_string().into(),
    })));
    frames
}

/// Runs the writer until the queue closes, a close was sent, or the peer cannot keep up.
pub async fn run(
    mut sink: SplitSink<WebSocket, Message>,
    mut out: OutboundRx,
    cfg: WriterConfig,
) -> WriterEnd {
    let mut ping = tokio::time::interval(cfg.ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    // One wait on the overflow token for the whole session: a `cancelled()` made anew on each
    // turn of the loop locks the token and registers a waiter per message (2.7 % of the
    // gateway's CPU in the floor-latency benchmark, docs/BENCHMARKS.md).
    let overflow = out.overflow.clone().cancelled_owned();
    tokio::pin!(overflow);
    let end = loop {
        let (frames, end) = tokio::select! {
            biased;
            () = &mut overflow => {
                out.rx.close();
                let reason = format!(
                    "too slow: more than {} messages waiting; reconnect",
                    out.rx.max_capacity()
                );
                (close_frames(close::POLICY, &reason), Some(WriterEnd::Overflow))
            }
            m = out.rx.recv() => match m {
                Some(Outbound::Frame(text)) => (vec![Message::Text(text.into())], None),
                Some(Outbound::Note(note)) => (vec![Message::Text(note.text.clone())], None),
                Some(Outbound::Close(code, reason)) => {
                    let frames = close_frames(code, &reason);
                    (frames, Some(WriterEnd::Closed(code, reason)))
                }
                None => break WriterEnd::QueueClosed,
            },
            _ = ping.tick() => (vec![Message::Ping(Default::default())], None),
        };
        let mut failed = None;
        for f in frames {
            if let Err(e) = write(&mut sink, f, cfg.write_timeout).await {
                failed = Some(e);
                break;
            }
        }
        // A close that could not be written still ends the session for its own reason.
        match (end, failed) {
            (Some(end), _) => break end,
            (None, Some(e)) => break e,
            (None, None) => {}
        }
    };
    let _ = tokio::time::timeout(cfg.write_timeout, sink.close()).await;
    end
}

async fn write(
    sink: &mut SplitSink<WebSocket, Message>,
    msg: Message,
    timeout: Duration,
) -> Result<(), WriterEnd> {
    match tokio::time::timeout(timeout, sink.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(WriterEnd::WriteFailed),
        Err(_) => Err(WriterEnd::WriteTimeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_are_cut_at_a_char_boundary() {
        assert_eq!(close_reason("short"), ("short", false));
        let long = "é".repeat(100); // 200 bytes
        let (cut, was_cut) = close_reason(&long);
        assert!(was_cut);
        assert_eq!(cut.len(), 122);
        assert!(long.starts_with(cut));
        let exact = "x".repeat(MAX_CLOSE_REASON_BYTES);
        assert_eq!(close_reason(&exact), (exact.as_str(), false));
    }

    #[test]
    fn a_long_reason_goes_whole_in_a_notification_before_the_close() {
        let reason = format!("Account is suspended: {}", "r".repeat(200));
        let frames = close_frames(4003, &reason);
        assert_eq!(frames.len(), 2);
        match &frames[0] {
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                assert_eq!(v["method"], "session.closing");
                assert_eq!(v["params"]["reason"], reason.as_str());
                assert_eq!(v["params"]["code"], 4003);
            }
            other => panic!("{other:?}"),
        }
        match &frames[1] {
            Message::Close(Some(f)) => {
                assert_eq!(f.code, 4003);
                assert_eq!(f.reason.len(), MAX_CLOSE_REASON_BYTES);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(close_frames(1000, "bye").len(), 1);
    }
}
