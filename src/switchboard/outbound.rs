//! What is queued for a participant's writer: replies, shared notifications, closes. The queue
//! is bounded ([`outbound`]): a participant that cannot keep up is not buffered for without
//! limit; the first message that does not fit marks the queue overflowed, and its writer
//! closes the connection (a WebSocket session: 1008, see `crate::signaling::writer`).

use super::notify::Rendered;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A message for a participant's writer (a WebSocket session, or a radio or console port).
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A text frame made for this participant alone (a JSON-RPC reply).
    Frame(String),
    /// A hub notification, rendered once and shared by every recipient.
    Note(Arc<Rendered>),
    /// Close the WebSocket with this code and reason, then end the session.
    Close(u16, String),
}

/// Why [`OutboundTx::send`] did not queue a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// The queue holds its capacity: the message is dropped and the queue marked overflowed.
    #[error("outbound queue full")]
    Full,
    /// The writer has ended.
    #[error("outbound queue closed")]
    Closed,
}

/// Sending half of a participant's outbound queue. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OutboundTx {
    tx: mpsc::Sender<Outbound>,
    overflow: CancellationToken,
}

/// Receiving half: the messages, and the overflow mark the writer watches.
#[derive(Debug)]
pub struct OutboundRx {
    /// The queued messages, in order.
    pub rx: mpsc::Receiver<Outbound>,
    /// Cancelled when a message did not fit: the writer should close the connection.
    pub overflow: CancellationToken,
}

/// A queue of at most `capacity` messages (at least 1).
pub fn outbound(capacity: usize) -> (OutboundTx, OutboundRx) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let overflow = CancellationToken::new();
    (
        OutboundTx {
            tx,
            overflow: overflow.clone(),
        },
        OutboundRx { rx, overflow },
    )
}

impl OutboundTx {
    /// Queues `msg` without waiting.
    ///
    /// # Errors
    /// [`OutboundError::Full`] when the queue is full (the queue is then marked overflowed),
    /// [`OutboundError::Closed`] when the writer has gone.
    pub fn send(&self, msg: Outbound) -> Result<(), OutboundError> {
        match self.tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflow.cancel();
                Err(OutboundError::Full)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(OutboundError::Closed),
        }
    }

    /// Whether a message has not fitted since the queue was made.
    pub fn overflowed(&self) -> bool {
        self.overflow.is_cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_refuses_and_marks_overflow() {
        let (tx, mut rx) = outbound(2);
        assert_eq!(tx.send(Outbound::Frame("a".into())), Ok(()));
        assert_eq!(tx.send(Outbound::Frame("b".into())), Ok(()));
        assert!(!tx.overflowed());
        assert_eq!(
            tx.send(Outbound::Frame("c".into())),
            Err(OutboundError::Full)
        );
        assert!(tx.overflowed() && rx.overflow.is_cancelled());
        assert!(matches!(rx.rx.try_recv(), Ok(Outbound::Frame(s)) if s == "a"));
        drop(rx);
        assert_eq!(
            tx.send(Outbound::Frame("d".into())),
            Err(OutboundError::Closed)
        );
    }
}
