//! A cluster's connections as timely's network threads use them, watched: a peer that dies or
//! stops answering ends this process's run with one error naming it, never with timely's panics
//! or a hang.
//!
//! Timely reads and writes the sockets it is given on threads of its own, panics at the first
//! error (which poisons the queues its workers read, so they panic too), and waits forever on a
//! peer that is alive but silent (stopped, cut off). So each socket is handed to timely wrapped in
//! a [`PeerStream`], which carries what timely writes in frames, sends a heartbeat frame every
//! fraction of the silence limit (`--connect-timeout`), and says goodbye when timely closes the
//! connection at the end of a run. A connection that ends without a goodbye, fails, or brings
//! nothing for the silence limit loses its peer: the [`PeerWatch`] records the first loss and
//! stops the run, timely's thread never sees the error (it waits instead, and is never joined),
//! and the workers, seeing the loss, leave the dataflow; process 0 commits the whole epochs it
//! has, nothing else. A process that leaves tells the others which peer was lost before its
//! connections close, so that every survivor names the same one.
//!
//! Must not: wait on a lost peer.

mod link;
mod panics;

use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use timely::communication::allocator::zero_copy::initialize::CommsGuard;

pub(super) use link::PeerStream;
use link::{Frame, Link};

/// A peer of the cluster was lost before this process's part of the run ended (`ingest` exits 4).
#[derive(Clone, Debug, thiserror::Error)]
#[error(
    "lost process {peer} ({address}) of the cluster: {cause}; the run stopped: what was \
     committed stays, run the cluster again to ingest the rest"
)]
pub struct PeerLost {
    pub peer: usize,
    pub address: String,
    /// What this process saw: the connection closed, failed, fell silent, or another peer lost it.
    pub cause: String,
}

/// The exit status of an `ingest` process that lost a peer of its cluster.
pub const PEER_LOST_EXIT_STATUS: u8 = 4;

/// How a peer was lost, as this process saw it.
#[derive(Debug)]
pub(super) enum Cause {
    /// Its connection ended (or was reset) without a goodbye: it was killed, or crashed.
    Closed,
    Failed(io::Error),
    /// Nothing came from it, not even a heartbeat, for the silence limit.
    Silent(Duration),
    /// Another peer lost it and is leaving.
    LostBy(usize),
    /// Timely's network thread for it failed (the message of its panic).
    Panicked(String),
}

/// The first peer this process lost, and what waits for that.
pub(super) struct PeerWatch {
    me: usize,
    addresses: Vec<String>,
    /// The run's stop flag: set when a peer is lost.
    stop: Arc<AtomicBool>,
    /// Set once a peer was lost (read by the workers at every step).
    any_lost: AtomicBool,
    state: Mutex<WatchState>,
    changed: Condvar,
    links: OnceLock<Vec<Weak<Link>>>,
}

#[derive(Default)]
struct WatchState {
    lost: Option<PeerLost>,
    /// This process's workers left the dataflow because of the loss.
    leaving: bool,
    /// Timely's network threads ended (every peer said goodbye).
    joined: bool,
}

impl PeerWatch {
    fn new(me: usize, addresses: Vec<String>, stop: Arc<AtomicBool>) -> PeerWatch {
        PeerWatch {
            me,
            addresses,
            stop,
            any_lost: AtomicBool::new(false),
            state: Mutex::new(WatchState::default()),
            changed: Condvar::new(),
            links: OnceLock::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The peer lost first, if one was.
    pub fn lost(&self) -> Option<PeerLost> {
        if !self.any_lost.load(Ordering::Acquire) {
            return None;
        }
        self.state().lost.clone()
    }

    /// Records that `peer` is lost (only the first loss is reported) and stops the run; its
    /// connection is shut down, so that nothing of this process waits on it.
    pub fn lose(&self, peer: usize, cause: Cause) {
        if peer == self.me || peer >= self.addresses.len() {
            return;
        }
        let cause = match cause {
            Cause::Closed => "its connection closed in the middle of the run".to_string(),
            Cause::Failed(error) => format!("its connection failed ({error})"),
            Cause::Silent(limit) => format!(
                "it sent nothing for {} s (--connect-timeout)",
                limit.as_secs()
            ),
            Cause::LostBy(other) => format!("process {other} ({}) lost it", self.addresses[other]),
            Cause::Panicked(message) => message,
        };
        let mut state = self.state();
        tracing::debug!(peer, cause, first = state.lost.is_none(), "lost a peer");
        if state.lost.is_none() {
            state.lost = Some(PeerLost {
                peer,
                address: self.addresses[peer].clone(),
                cause,
            });
            self.any_lost.store(true, Ordering::Release);
            self.stop.store(true, Ordering::SeqCst);
            self.changed.notify_all();
        }
        drop(state);
        if let Some(link) = self.link(peer) {
            link.shut_down();
        }
    }

    /// This process's workers leave the dataflow because a peer was lost: the others are told
    /// which, before this process's connections close without a goodbye.
    pub fn leave(&self) {
        let mut state = self.state();
        if state.leaving {
            return;
        }
        state.leaving = true;
        let Some(lost) = state.lost.clone() else {
            return;
        };
        drop(state);
        // Bounded: a connection whose writes are stuck (a second peer stopped) is not told.
        let deadline = Instant::now() + Duration::from_secs(1);
        for link in self.links.get().into_iter().flatten() {
            if let Some(link) = link.upgrade()
                && link.peer != lost.peer
            {
                link.send_before(&Frame::Lost(lost.peer), deadline);
            }
        }
    }

    fn is_leaving(&self) -> bool {
        self.state().leaving
    }

    fn link(&self, peer: usize) -> Option<Arc<Link>> {
        self.links.get()?.get(peer)?.upgrade()
    }

    /// Waits until timely's network threads have ended, or a peer is lost (they never will then).
    fn wait_joined_or_lost(&self) {
        let mut state = self.state();
        while !state.joined && state.lost.is_none() {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn joined(&self) {
        self.state().joined = true;
        self.changed.notify_all();
    }
}

/// Wraps the connected `sockets` (in process order, `None` for this process) for timely, each
/// with its heartbeat, watched by the returned [`PeerWatch`]; a peer silent for `silence` is lost,
/// and losing one sets `stop`.
pub(super) fn watch(
    me: usize,
    addresses: &[String],
    sockets: Vec<Option<TcpStream>>,
    silence: Duration,
    stop: Arc<AtomicBool>,
) -> io::Result<(Vec<Option<PeerStream>>, Arc<PeerWatch>)> {
    let watch = Arc::new(PeerWatch::new(me, addresses.to_vec(), stop));
    let mut links = Vec::with_capacity(sockets.len());
    let mut streams = Vec::with_capacity(sockets.len());
    for (peer, socket) in sockets.into_iter().enumerate() {
        let Some(socket) = socket else {
            links.push(Weak::new());
            streams.push(None);
            continue;
        };
        let link = Link::start(peer, socket, Arc::clone(&watch), silence)?;
        links.push(Arc::downgrade(&link));
        streams.push(Some(PeerStream::new(link)));
    }
    let _ = watch.links.set(links);
    panics::contain(&watch);
    Ok((streams, watch))
}

/// What must live as long as the workers run: timely's network threads. Dropped, it waits for
/// them to end (every peer's goodbye), unless a peer is lost: then they never will, and are left.
pub(super) struct Connections {
    guard: Option<CommsGuard>,
    watch: Arc<PeerWatch>,
}

impl Connections {
    pub fn new(guard: CommsGuard, watch: Arc<PeerWatch>) -> Connections {
        Connections {
            guard: Some(guard),
            watch,
        }
    }
}

impl Drop for Connections {
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        let watch = Arc::clone(&self.watch);
        let joining = std::thread::Builder::new()
            .name("network-join".into())
            .spawn(move || {
                drop(guard);
                watch.joined();
            });
        if joining.is_ok() {
            self.watch.wait_joined_or_lost();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::link::MAX_FRAME;
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener};
    use timely::communication::allocator::zero_copy::stream::Stream;

    /// A watched process of a [`mesh`]: its streams (by peer), its watch and its stop flag.
    struct Process {
        streams: Vec<Option<PeerStream>>,
        watch: Arc<PeerWatch>,
        stop: Arc<AtomicBool>,
    }

    impl Process {
        fn stream(&mut self, peer: usize) -> PeerStream {
            self.streams[peer].take().unwrap()
        }

        /// Reads everything from `peer` on a thread of its own, as timely's receiving thread does.
        fn read_from(&mut self, peer: usize) -> std::thread::JoinHandle<Vec<u8>> {
            let mut stream = self.stream(peer);
            std::thread::spawn(move || {
                let mut received = Vec::new();
                stream.read_to_end(&mut received).unwrap();
                received
            })
        }

        fn until_lost(&self) -> PeerLost {
            loop {
                if let Some(lost) = self.watch.lost() {
                    return lost;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// `n` processes connected to each other on loopback, each watched.
    fn mesh(n: usize, silence: Duration) -> Vec<Process> {
        let listeners: Vec<TcpListener> = (0..n)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let addresses: Vec<String> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().to_string())
            .collect();
        let mut sockets: Vec<Vec<Option<TcpStream>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        for (i, j) in (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j))) {
            sockets[i][j] = Some(TcpStream::connect(&addresses[j]).unwrap());
            sockets[j][i] = Some(listeners[j].accept().unwrap().0);
        }
        sockets
            .into_iter()
            .enumerate()
            .map(|(me, sockets)| {
                let stop = Arc::new(AtomicBool::new(false));
                let (streams, watch) =
                    super::watch(me, &addresses, sockets, silence, Arc::clone(&stop)).unwrap();
                Process {
                    streams,
                    watch,
                    stop,
                }
            })
            .collect()
    }

    const LONG: Duration = Duration::from_secs(60);

    #[test]
    fn bytes_go_through_in_frames_with_heartbeats_between_and_end_after_a_goodbye() {
        let mut processes = mesh(2, Duration::from_secs(1));
        let receiving = processes[0].read_from(1);
        let mut writer = processes[1].stream(0);
        let sent: Vec<u8> = (0..3 * MAX_FRAME as u32 + 7).map(|i| i as u8).collect();
        writer.write_all(&sent[..10]).unwrap();
        // Longer than the silence limit with nothing but heartbeats.
        std::thread::sleep(Duration::from_millis(1500));
        writer.write_all(&sent[10..]).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
        assert!(receiving.join().unwrap() == sent, "every byte, in order");
        assert!(processes[0].watch.lost().is_none());
        assert!(!processes[0].stop.load(Ordering::SeqCst));
    }

    #[test]
    fn a_connection_that_closes_without_a_goodbye_loses_its_peer_and_stops_the_run() {
        let mut processes = mesh(2, LONG);
        let mut writer = processes[0].streams[1]
            .as_ref()
            .unwrap()
            .try_clone()
            .unwrap();
        let reading = processes[0].read_from(1);
        // What killing the peer's process does.
        processes[1].stream(0).link.shut_down();
        let lost = processes[0].until_lost();
        assert_eq!(lost.peer, 1);
        assert!(
            lost.to_string().starts_with("lost process 1 (127.0.0.1:"),
            "{lost}"
        );
        assert!(processes[0].stop.load(Ordering::SeqCst));
        assert!(
            !reading.is_finished(),
            "a read from a lost peer never returns"
        );
        // Writes to it are dropped, never an error (timely would panic).
        writer.write_all(b"more").unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    }

    #[test]
    fn a_peer_that_sends_nothing_for_the_silence_limit_is_lost() {
        let mut processes = mesh(2, Duration::from_secs(1));
        let _reading = processes[0].read_from(1);
        // Process 1's heartbeat stops, as in a stopped process; its connection stays open.
        let one = processes[1].stream(0);
        *one.link.closed.lock().unwrap() = true;
        let lost = processes[0].until_lost();
        assert_eq!(lost.peer, 1);
        assert!(lost.cause.contains("sent nothing for 1 s"), "{lost}");
        drop(one);
    }

    #[test]
    fn a_process_that_leaves_tells_the_others_which_peer_it_lost_and_gives_no_goodbye() {
        let mut processes = mesh(3, LONG);
        let _zero_reads = processes[0].read_from(1);
        let _two_reads = processes[2].read_from(1);
        processes[1]
            .watch
            .lose(2, Cause::Silent(Duration::from_secs(60)));
        processes[1].watch.leave();
        let lost = processes[0].until_lost();
        assert_eq!(lost.peer, 2, "{lost}");
        assert!(lost.cause.starts_with("process 1 (127.0.0.1:"), "{lost}");
        // Process 1 then closes its connection to 0 without a goodbye: 0 still names process 2.
        processes[1].stream(0).shutdown(Shutdown::Write).unwrap();
        assert_eq!(processes[0].until_lost().peer, 2);
        // Process 2, the one lost, is not told; it sees process 1 close in the middle of the run.
        assert_eq!(processes[2].until_lost().peer, 1);
    }
}
