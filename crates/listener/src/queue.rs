//! Request queues. A queue holds requests routed to it until a process
//! serving it is ready for them; any number of processes may serve one
//! queue. A full queue answers 503 QueueFull, a stopped one 503
//! AppOffline, and a queue nobody serves asks its controller to start a
//! process (demand start). A queue has a creator ([`Creator`]): the
//! service's are opened only by the processes it allows, to receive; a
//! program's by its user.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use httpapi::proto::{Header, ResponseHead};

use crate::admit::RequestFrame;

use crate::server::Caller;
use crate::session::Session;

/// What a connection hears about its request from the serving side.
#[derive(Debug)]
pub(crate) enum ConnEvent {
    /// A process took the request.
    Delivered(Arc<Session>),
    /// The process read this many request body bytes.
    BodyConsumed(u64),
    /// The process reads the body: a 100 Continue is owed now.
    BodyWanted,
    Head(ResponseHead),
    Body(Bytes),
    /// Body bytes to send from a file (sendfile).
    File {
        file: std::fs::File,
        offset: u64,
        len: u64,
    },
    /// The response is complete: its trailers, and what changed in its
    /// log line since its head.
    End(Vec<Header>, httpapi::proto::LateLog),
    /// The process went away or gave the request up.
    Abandoned,
    /// The process takes the connection over ([`httpapi::handoff`]),
    /// logging the request with `status`.
    TakeOver {
        token: httpapi::handoff::Token,
        status: u16,
    },
    /// The queue was stopped while the request waited in it: answer 503
    /// AppOffline, or drop the connection when `drop`.
    Offline {
        drop: bool,
    },
}

pub(crate) use crate::completion::EventSender;

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Dispatch {
    Delivered,
    Queued,
    Full,
    Offline,
    /// Stopped, and its owner wants connections dropped rather than
    /// answered (IIS's LoadBalancerCapabilities 1, for load balancers
    /// that watch for closed connections).
    Dropped,
}

struct Consumer {
    session: Arc<Session>,
    credit: u32,
}

struct Pending {
    request: RequestFrame,
    events: EventSender,
}

struct Inner {
    max_length: usize,
    stopped: bool,
    drop_when_stopped: bool,
    pending: VecDeque<Pending>,
    consumers: Vec<Consumer>,
    next: usize,
    /// Sessions that have the queue open (0 for a queue held in-process).
    holders: usize,
    demand_signalled: bool,
    /// Processes the owner let open the queue (the workers it started).
    allowed_pids: Vec<u32>,
    /// Requests routed here, and those turned away (full, stopped), since
    /// the queue was made: Performance Monitor's "HTTP Service Request
    /// Queues" ArrivalRate and RejectedRequests.
    arrived: u64,
    rejected: u64,
}

/// Who created a queue, which decides who may open it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Creator {
    /// The process the listener runs in (the activation service): only
    /// the processes it allows ([`Queue::allow_process`]) may open it,
    /// and only to receive; a program's queue of the same name is another
    /// queue.
    Service,
    /// A program, through the control socket: its user (and root) may
    /// open it again.
    Program,
}

/// A request queue.
pub struct Queue {
    pub id: u32,
    pub name: String,
    /// The user that created it.
    pub owner_uid: u32,
    /// The process that created it, when known (a program's).
    pub owner_pid: Option<u32>,
    pub creator: Creator,
    inner: Mutex<Inner>,
}

/// One queue's counters (Performance Monitor's "HTTP Service Request
/// Queues" object).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueCounters {
    pub name: String,
    /// The service's (an application pool's) rather than a program's.
    pub service: bool,
    /// Requests waiting now (CurrentQueueSize), and the most it holds.
    pub length: usize,
    pub max_length: usize,
    /// Requests routed to it, and those answered 503 (full) or turned
    /// away (stopped), since it was made.
    pub arrived: u64,
    pub rejected: u64,
    /// Processes serving it.
    pub consumers: usize,
    pub stopped: bool,
}

/// Called when a request arrives for a queue nobody serves.
pub type DemandStartHook = Arc<dyn Fn(&Queue) + Send + Sync>;

impl Queue {
    pub(crate) fn new(
        id: u32,
        name: &str,
        owner: Caller,
        creator: Creator,
        max_length: usize,
    ) -> Queue {
        Queue {
            id,
            name: name.to_string(),
            owner_uid: owner.uid,
            owner_pid: owner.pid,
            creator,
            inner: Mutex::new(Inner {
                max_length,
                stopped: false,
                drop_when_stopped: false,
                pending: VecDeque::new(),
                consumers: Vec::new(),
                next: 0,
                holders: 0,
                demand_signalled: false,
                allowed_pids: Vec::new(),
                arrived: 0,
                rejected: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Routes a request to a ready process, or queues it. `demand` is
    /// called (once until a process attaches) when nobody serves the queue.
    pub(crate) fn dispatch(
        &self,
        request: RequestFrame,
        events: EventSender,
        demand: Option<&DemandStartHook>,
    ) -> Dispatch {
        let mut inner = self.lock();
        inner.arrived += 1;
        if inner.stopped {
            inner.rejected += 1;
            return if inner.drop_when_stopped {
                Dispatch::Dropped
            } else {
                Dispatch::Offline
            };
        }
        // Delivered under the queue's lock: a process that stops
        // receiving (detach, under the same lock) has every request handed
        // to it on the wire before its StopReceiving reply, so its drain
        // sees them all.
        let (request, events) = match deliver_to_any(&mut inner, request, events) {
            Ok(()) => return Dispatch::Delivered,
            Err(undelivered) => undelivered,
        };
        if inner.pending.len() >= inner.max_length {
            inner.rejected += 1;
            return Dispatch::Full;
        }
        inner.pending.push_back(Pending { request, events });
        let signal = inner.consumers.is_empty() && !inner.demand_signalled;
        if signal {
            inner.demand_signalled = true;
        }
        drop(inner);
        if signal {
            if let Some(hook) = demand {
                hook(self);
            }
        }
        Dispatch::Queued
    }

    /// A process is ready for `count` more requests.
    pub(crate) fn grant(&self, session: &Arc<Session>, count: u32) {
        let mut inner = self.lock();
        inner.demand_signalled = false;
        let index = match inner
            .consumers
            .iter()
            .position(|c| Arc::ptr_eq(&c.session, session))
        {
            Some(i) => i,
            None => {
                inner.consumers.push(Consumer {
                    session: session.clone(),
                    credit: 0,
                });
                inner.consumers.len() - 1
            }
        };
        inner.consumers[index].credit = inner.consumers[index].credit.saturating_add(count);
        while inner.consumers[index].credit > 0 {
            let Some(p) = inner.pending.pop_front() else {
                break;
            };
            if let Err((request, events)) = deliver(session, p.request, p.events) {
                // The session is closing: the request waits for another.
                inner.pending.push_front(Pending { request, events });
                inner.consumers.remove(index);
                return;
            }
            inner.consumers[index].credit -= 1;
        }
    }

    /// Takes a request that is still waiting out of the queue (its time
    /// ran out or its client left); false if a process already has it.
    pub(crate) fn cancel(&self, request: u64) -> bool {
        let mut inner = self.lock();
        match inner.pending.iter().position(|p| p.request.id == request) {
            Some(i) => {
                inner.pending.remove(i);
                true
            }
            None => false,
        }
    }

    /// A process serving the queue now (the first that asked for
    /// requests), if any.
    pub(crate) fn serving_session(&self) -> Option<Arc<Session>> {
        self.lock().consumers.first().map(|c| c.session.clone())
    }

    /// A session stops serving the queue.
    pub(crate) fn detach(&self, session: &Arc<Session>) {
        let mut inner = self.lock();
        inner
            .consumers
            .retain(|c| !Arc::ptr_eq(&c.session, session));
    }

    pub(crate) fn add_holder(&self) {
        self.lock().holders += 1;
    }

    /// Returns true when nobody holds the queue any more.
    pub(crate) fn remove_holder(&self) -> bool {
        let mut inner = self.lock();
        inner.holders = inner.holders.saturating_sub(1);
        inner.holders == 0
    }

    /// Stops or restarts the queue. Stopping it turns away the requests
    /// waiting in it too, as new ones are (HTTP.SYS does the same when an
    /// application pool is disabled): they would otherwise wait out the
    /// RequestQueue timeout for a process that will not come.
    pub fn set_stopped(&self, stopped: bool) {
        self.lock().stopped = stopped;
        if stopped {
            self.turn_away_waiting();
        }
    }

    /// Answers the requests waiting in the queue as a stopped queue
    /// would (503 AppOffline, or a dropped connection), leaving the queue
    /// open for new ones: no process could be started for them, and they
    /// should not wait out the RequestQueue timeout for one. Returns how
    /// many were turned away.
    pub fn turn_away_waiting(&self) -> usize {
        let (waiting, drop) = {
            let mut inner = self.lock();
            inner.demand_signalled = false;
            (std::mem::take(&mut inner.pending), inner.drop_when_stopped)
        };
        let count = waiting.len();
        for p in waiting {
            let _ = p.events.send(ConnEvent::Offline { drop });
        }
        count
    }

    /// Whether a stopped queue drops connections (true) or answers 503.
    pub fn set_drop_when_stopped(&self, drop: bool) {
        self.lock().drop_when_stopped = drop;
    }

    /// Lets process `pid` open the queue to receive from it (a worker
    /// process its owner started), by process, not by user: another
    /// process of the same user is refused.
    pub fn allow_process(&self, pid: u32) {
        let mut inner = self.lock();
        if !inner.allowed_pids.contains(&pid) {
            inner.allowed_pids.push(pid);
        }
    }

    /// Withdraws [`Queue::allow_process`] (the process exited: its pid
    /// may come back as another's).
    pub fn revoke_process(&self, pid: u32) {
        self.lock().allowed_pids.retain(|p| *p != pid);
    }

    /// Whether a program's process may open the queue.
    pub(crate) fn may_open(&self, uid: u32, pid: Option<u32>) -> bool {
        match self.creator {
            Creator::Service => pid.is_some_and(|pid| self.lock().allowed_pids.contains(&pid)),
            Creator::Program => uid == self.owner_uid || uid == 0,
        }
    }

    /// Whether a program's session may control the queue (stop it, set
    /// its length, change its URLs): its creator's user, or root, for a
    /// program's queue; nobody outside the service for the service's.
    pub(crate) fn may_control(&self, uid: u32) -> bool {
        self.creator == Creator::Program && (uid == self.owner_uid || uid == 0)
    }

    pub fn is_stopped(&self) -> bool {
        self.lock().stopped
    }

    pub fn set_max_length(&self, max: usize) {
        self.lock().max_length = max;
    }

    /// The queue's counters now.
    pub fn counters(&self) -> QueueCounters {
        let inner = self.lock();
        QueueCounters {
            name: self.name.clone(),
            service: self.creator == Creator::Service,
            length: inner.pending.len(),
            max_length: inner.max_length,
            arrived: inner.arrived,
            rejected: inner.rejected,
            consumers: inner.consumers.len(),
            stopped: inner.stopped,
        }
    }

    /// Requests waiting for a process.
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// Processes serving the queue.
    pub fn consumers(&self) -> usize {
        self.lock().consumers.len()
    }

    /// Fails every waiting request (the queue is going away).
    pub(crate) fn drain(&self) {
        let pending: Vec<Pending> = self.lock().pending.drain(..).collect();
        for p in pending {
            let _ = p.events.send(ConnEvent::Abandoned);
        }
    }
}

/// The next consumer with credit, round robin.
fn take_credit(inner: &mut Inner) -> Option<Arc<Session>> {
    let n = inner.consumers.len();
    for k in 0..n {
        let i = (inner.next + k) % n;
        if inner.consumers[i].credit > 0 {
            inner.consumers[i].credit -= 1;
            inner.next = (i + 1) % n;
            return Some(inner.consumers[i].session.clone());
        }
    }
    None
}

type Undelivered = (RequestFrame, EventSender);

/// Hands a request to the next consumer with credit. A consumer whose
/// session is closing (its process went away) is dropped and the next
/// one tried; with none left the request is given back to wait.
fn deliver_to_any(
    inner: &mut Inner,
    mut request: RequestFrame,
    mut events: EventSender,
) -> Result<(), Undelivered> {
    while let Some(session) = take_credit(inner) {
        match deliver(&session, request, events) {
            Ok(()) => return Ok(()),
            Err(back) => {
                (request, events) = back;
                inner
                    .consumers
                    .retain(|c| !Arc::ptr_eq(&c.session, &session));
            }
        }
    }
    Err((request, events))
}

/// Hands a request to a session, unless that session is closing.
fn deliver(
    session: &Arc<Session>,
    request: RequestFrame,
    events: EventSender,
) -> Result<(), Undelivered> {
    // Registered before the process can answer, so no answer is lost.
    if !session.track(request.id, events.clone()) {
        return Err((request, events));
    }
    let _ = events.send(ConnEvent::Delivered(session.clone()));
    session.send_request(request);
    Ok(())
}
