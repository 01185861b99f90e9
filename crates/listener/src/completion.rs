//! A request's completion slot: where what the serving side says about one
//! request (taken, response head, body, end, abandoned) meets the
//! connection waiting for it. One small allocation per request, one
//! uncontended lock per event; a general-purpose channel would allocate a
//! block of 32 events for the four or so a request has.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use crate::queue::ConnEvent;

struct State {
    events: VecDeque<ConnEvent>,
    waker: Option<Waker>,
    /// Live [`EventSender`]s: at none, the connection hears the end.
    senders: usize,
    /// The connection is gone: events are dropped on arrival.
    closed: bool,
}

struct Slot {
    state: Mutex<State>,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A new slot: its sending side (for the queue and the session) and the
/// connection's side.
pub(crate) fn slot() -> (EventSender, Events) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State {
            events: VecDeque::with_capacity(4),
            waker: None,
            senders: 1,
            closed: false,
        }),
    });
    (EventSender { slot: slot.clone() }, Events { slot })
}

/// Sends a request's events to its connection.
pub(crate) struct EventSender {
    slot: Arc<Slot>,
}

impl std::fmt::Debug for EventSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSender")
    }
}

impl EventSender {
    /// Hands `event` to the connection; false (and the event dropped)
    /// when the connection has gone.
    pub fn send(&self, event: ConnEvent) -> bool {
        let waker = {
            let mut state = self.slot.lock();
            if state.closed {
                return false;
            }
            state.events.push_back(event);
            state.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }
}

impl Clone for EventSender {
    fn clone(&self) -> Self {
        self.slot.lock().senders += 1;
        EventSender {
            slot: self.slot.clone(),
        }
    }
}

impl Drop for EventSender {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.slot.lock();
            state.senders -= 1;
            if state.senders > 0 {
                return;
            }
            state.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The connection's side of a slot.
pub(crate) struct Events {
    slot: Arc<Slot>,
}

impl Events {
    /// The next event; `None` once every sender is gone and nothing is
    /// left. Cancel-safe: an event is only taken when returned.
    pub async fn recv(&mut self) -> Option<ConnEvent> {
        poll_fn(|cx| {
            let mut state = self.slot.lock();
            if let Some(event) = state.events.pop_front() {
                return Poll::Ready(Some(event));
            }
            if state.senders == 0 {
                return Poll::Ready(None);
            }
            match &mut state.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    /// An event already there, without waiting.
    pub fn try_recv(&mut self) -> Option<ConnEvent> {
        self.slot.lock().events.pop_front()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        // What arrived unread (a file's descriptor among it) goes now,
        // not when the last sender does.
        let left = {
            let mut state = self.slot.lock();
            state.closed = true;
            state.waker = None;
            std::mem::take(&mut state.events)
        };
        drop(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_arrive_in_order_and_the_end_after_the_last_sender() {
        let (tx, mut rx) = slot();
        let copy = tx.clone();
        assert!(tx.send(ConnEvent::BodyConsumed(1)));
        assert!(copy.send(ConnEvent::BodyConsumed(2)));
        assert!(matches!(rx.try_recv(), Some(ConnEvent::BodyConsumed(1))));
        drop(tx);
        assert!(matches!(rx.recv().await, Some(ConnEvent::BodyConsumed(2))));
        assert!(rx.try_recv().is_none());
        drop(copy);
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_waiting_connection_is_woken() {
        let (tx, mut rx) = slot();
        let waiter = tokio::spawn(async move { rx.recv().await.is_some() });
        tokio::task::yield_now().await;
        assert!(tx.send(ConnEvent::Abandoned));
        assert!(waiter.await.unwrap());
        // The connection is gone: the event is refused.
        assert!(!tx.send(ConnEvent::Abandoned));
    }

    #[tokio::test]
    async fn the_last_sender_leaving_wakes_a_waiting_connection() {
        let (tx, mut rx) = slot();
        let waiter = tokio::spawn(async move { rx.recv().await.is_none() });
        tokio::task::yield_now().await;
        drop(tx);
        assert!(waiter.await.unwrap());
    }
}
