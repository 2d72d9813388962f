//! The connections the HTTP endpoint holds, and which one to let go when there are too many.
//!
//! New connections are never refused: a probe is always a new connection, and refusing new
//! ones is what let any local process fail a liveness probe. Instead, at the cap, the oldest
//! *idle* connection — one waiting for a request head: a slowloris client, a connection that
//! never sent anything, a kept-alive one between requests — is closed to make room. A
//! connection busy with a request is never chosen, and the expensive requests are bounded
//! elsewhere, so the count stays near the cap. The same eviction frees a descriptor when
//! `accept` fails for lack of one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// One open connection, as its task and the registry share it.
#[derive(Default)]
pub struct Conn {
    /// Requests of this connection being answered right now (inside the service).
    busy: AtomicUsize,
    /// Told when the registry chose this connection to close.
    pub evicted: Notify,
}

impl Conn {
    /// Marks a request in progress until the returned guard is dropped.
    pub fn busy(self: &Arc<Self>) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::Relaxed);
        BusyGuard(self.clone())
    }

    fn is_idle(&self) -> bool {
        self.busy.load(Ordering::Relaxed) == 0
    }
}

pub struct BusyGuard(Arc<Conn>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every open connection, oldest first.
pub struct Conns {
    cap: usize,
    live: Mutex<Live>,
    /// Told whenever a connection's task lets go of its socket.
    pub closed: Notify,
}

#[derive(Default)]
struct Live {
    next: u64,
    /// By admission order: the first entry is the oldest.
    conns: BTreeMap<u64, Arc<Conn>>,
}

/// Held by a connection's task; dropping it unregisters the connection.
pub struct Admission {
    id: u64,
    registry: Arc<Conns>,
    pub conn: Arc<Conn>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.registry.lock().conns.remove(&self.id);
        self.registry.closed.notify_one();
    }
}

impl Conns {
    pub fn new(cap: usize) -> Arc<Conns> {
        Arc::new(Conns {
            cap: cap.max(1),
            live: Mutex::default(),
            closed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new connection; at the cap, first closes the oldest idle one. Returns the
    /// admission and whether a connection was evicted for it.
    pub fn admit(self: &Arc<Self>) -> (Admission, bool) {
        let mut live = self.lock();
        let evicted = live.conns.len() >= self.cap && evict_oldest_idle(&mut live);
        let id = live.next;
        live.next += 1;
        let conn = Arc::new(Conn::default());
        live.conns.insert(id, conn.clone());
        drop(live);
        (
            Admission {
                id,
                registry: self.clone(),
                conn,
            },
            evicted,
        )
    }

    /// Closes the oldest idle connection, if there is one (to free a descriptor).
    pub fn evict_oldest_idle(&self) -> bool {
        evict_oldest_idle(&mut self.lock())
    }

    /// Connections open now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().conns.len()
    }
}

fn evict_oldest_idle(live: &mut Live) -> bool {
    let Some(id) = live
        .conns
        .iter()
        .find(|(_, c)| c.is_idle())
        .map(|(&id, _)| id)
    else {
        return false;
    };
    if let Some(conn) = live.conns.remove(&id) {
        // A stored permit: the task sees it even if it is not waiting yet.
        conn.evicted.notify_one();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_oldest_idle_connection_goes() {
        let conns = Conns::new(3);
        let (a, ea) = conns.admit();
        let (b, _) = conns.admit();
        let (c, _) = conns.admit();
        assert!(!ea);
        assert_eq!(conns.len(), 3);
        // `a` is busy with a request: `b` is the oldest idle one.
        let busy = a.conn.busy();
        let (d, ed) = conns.admit();
        assert!(ed);
        assert_eq!(conns.len(), 3);
        let evicted = |x: &Admission| futures_ready(x.conn.evicted.notified());
        assert!(!evicted(&a));
        assert!(evicted(&b));
        assert!(!evicted(&c));
        // `a` is idle again and the oldest.
        drop(busy);
        let (_e, _) = conns.admit();
        assert!(evicted(&a));
        assert!(!evicted(&c) && !evicted(&d));
        drop(b);
        assert_eq!(conns.len(), 3);
    }

    #[test]
    fn when_every_connection_is_busy_the_new_one_still_comes_in() {
        let conns = Conns::new(2);
        let (a, _) = conns.admit();
        let (b, _) = conns.admit();
        let (_ga, _gb) = (a.conn.busy(), b.conn.busy());
        let (c, evicted) = conns.admit();
        assert!(!evicted);
        assert_eq!(conns.len(), 3);
        let _gc = c.conn.busy();
        assert!(!conns.evict_oldest_idle());
        drop((a, b));
        assert_eq!(conns.len(), 1);
    }

    /// Whether a `Notified` future completes on its first poll.
    fn futures_ready(f: tokio::sync::futures::Notified<'_>) -> bool {
        use std::future::Future;
        let mut f = std::pin::pin!(f);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        f.as_mut().poll(&mut cx).is_ready()
    }
}
