//! How this process's workers talk to each other and to the cluster's other processes: timely's
//! communication configuration, with the cluster's connections made here, under a deadline.
//!
//! Timely connects a cluster itself but retries a missing peer forever and reports each attempt on
//! stdout. Here every connection is made (with timely's handshake: the connecting process sends
//! its index as a big-endian u64) before the workers start, and a peer that has not answered by
//! `--connect-timeout` is an error that names it; timely then runs on the connected sockets,
//! watched (`peers.rs`): a peer that dies or falls silent that long later is lost, and named.

use std::any::Any;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Context;
use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::{AllocatorBuilder, ProcessBuilder};
use timely::communication::{Config, Hooks};

use super::Cluster;
use super::peers::{self, Connections, PeerWatch};

/// The cluster did not form within its connect timeout (`ingest` exits 3).
#[derive(Debug, thiserror::Error)]
#[error("the cluster did not form within {seconds} s: {missing}")]
pub struct ClusterDidNotForm {
    pub seconds: u64,
    /// Which peers never answered.
    pub missing: String,
}

/// The workers' allocators (`workers` threads; in a cluster, connected to every other process),
/// what must live as long as they run, and in a cluster the watch on its peers.
pub(super) struct Allocators {
    pub builders: Vec<AllocatorBuilder>,
    pub connections: Box<dyn Any + Send>,
    pub peers: Option<Arc<PeerWatch>>,
}

/// Allocators for `workers` threads of this process, and of a cluster when one is given; losing
/// a peer of the cluster sets `stop`.
pub(super) fn allocators(
    workers: usize,
    cluster: Option<&Cluster>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Allocators> {
    let workers = workers.max(1);
    let Some(cluster) = cluster else {
        let config = match workers {
            1 => Config::Thread,
            _ => Config::Process(workers),
        };
        let (builders, connections) = config
            .try_build()
            .map_err(|e| anyhow::anyhow!("starting the workers: {e}"))?;
        return Ok(Allocators {
            builders,
            connections,
            peers: None,
        });
    };
    let sockets = connect(cluster)?;
    let (sockets, watch) = peers::watch(
        cluster.process_id,
        &cluster.addresses,
        sockets,
        silence_limit(cluster),
        Arc::clone(stop),
    )
    .context("starting the cluster's connections")?;
    let hooks = Hooks::default();
    let local =
        ProcessBuilder::new_typed_vector(workers, hooks.refill.clone(), hooks.spill.clone());
    let (builders, guard) =
        initialize_networking_from_sockets(local, sockets, cluster.process_id, workers, hooks)
            .context("starting the cluster's connections")?;
    Ok(Allocators {
        builders: builders.into_iter().map(AllocatorBuilder::Tcp).collect(),
        connections: Box::new(Connections::new(guard, Arc::clone(&watch))),
        peers: Some(watch),
    })
}

/// How long a peer may send nothing (its heartbeats stopped: a stopped process, a cut network)
/// before it is lost: the connect timeout, and at least a second.
fn silence_limit(cluster: &Cluster) -> Duration {
    cluster.connect_timeout.max(Duration::from_secs(1))
}

/// A connection to every other process, in process order (`None` for this one): this process
/// connects to those before it and accepts those after it, all within the connect timeout.
fn connect(cluster: &Cluster) -> anyhow::Result<Vec<Option<TcpStream>>> {
    let me = cluster.process_id;
    let deadline = Instant::now() + cluster.connect_timeout;
    // Listening first, so that later processes can connect while this one connects to earlier ones.
    let own = &cluster.addresses[me];
    let listener =
        TcpListener::bind(own).with_context(|| format!("cannot listen on {own} (process {me})"))?;
    let mut sockets: Vec<Option<TcpStream>> = Vec::with_capacity(cluster.addresses.len());
    for (peer, address) in cluster.addresses.iter().enumerate().take(me) {
        let mut stream =
            connect_before(address, deadline).ok_or_else(|| did_not_form(cluster, &[peer]))?;
        stream.set_nodelay(true)?;
        stream.write_all(&(me as u64).to_be_bytes())?;
        sockets.push(Some(stream));
    }
    sockets.push(None);
    sockets.extend(
        accept_before(&listener, cluster, deadline)?
            .into_iter()
            .map(Some),
    );
    Ok(sockets)
}

/// A connection to `address`, retried until `deadline` (the peer may not be listening yet, or its
/// name not resolve yet).
fn connect_before(address: &str, deadline: Instant) -> Option<TcpStream> {
    loop {
        let remaining = deadline.checked_duration_since(Instant::now())?;
        let resolved: Vec<SocketAddr> = address
            .to_socket_addrs()
            .map(Iterator::collect)
            .unwrap_or_default();
        for socket in &resolved {
            let wait = remaining
                .min(Duration::from_secs(1))
                .max(Duration::from_millis(1));
            if let Ok(stream) = TcpStream::connect_timeout(socket, wait) {
                return Some(stream);
            }
        }
        std::thread::sleep(remaining.min(Duration::from_millis(50)));
    }
}

/// How long a connection may take to say which process it is.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection from every process after this one, each identified by the index it sends. A
/// connection that does not name such a process in time is dropped; a process that connects again
/// (it restarted) replaces its earlier connection.
fn accept_before(
    listener: &TcpListener,
    cluster: &Cluster,
    deadline: Instant,
) -> anyhow::Result<Vec<TcpStream>> {
    let me = cluster.process_id;
    let processes = cluster.addresses.len();
    let mut later: Vec<Option<TcpStream>> = (me + 1..processes).map(|_| None).collect();
    listener.set_nonblocking(true)?;
    while later.iter().any(Option::is_none) {
        let Some(remaining) = deadline.checked_duration_since(Instant::now()) else {
            let missing: Vec<usize> = (me + 1..processes)
                .filter(|&peer| later[peer - me - 1].is_none())
                .collect();
            return Err(did_not_form(cluster, &missing).into());
        };
        match listener.accept() {
            Ok((stream, _)) => {
                if let Some((peer, stream)) = handshake(stream, remaining.min(HANDSHAKE_TIMEOUT))
                    && peer > me
                    && peer < processes
                {
                    later[peer - me - 1] = Some(stream);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(remaining.min(Duration::from_millis(20)));
            }
            Err(e) => return Err(e).context("accepting the cluster's connections"),
        }
    }
    Ok(later.into_iter().flatten().collect())
}

/// The process index an accepted connection sends first, within `timeout`, and the connection
/// made ready for timely (blocking, no delay); `None` when it sends none.
fn handshake(mut stream: TcpStream, timeout: Duration) -> Option<(usize, TcpStream)> {
    stream.set_nonblocking(false).ok()?;
    stream
        .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
        .ok()?;
    let mut index = [0u8; 8];
    stream.read_exact(&mut index).ok()?;
    stream.set_read_timeout(None).ok()?;
    stream.set_nodelay(true).ok()?;
    Some((usize::try_from(u64::from_be_bytes(index)).ok()?, stream))
}

fn did_not_form(cluster: &Cluster, peers: &[usize]) -> ClusterDidNotForm {
    let named: Vec<String> = peers
        .iter()
        .map(|&peer| format!("process {peer} ({})", cluster.addresses[peer]))
        .collect();
    ClusterDidNotForm {
        seconds: cluster.connect_timeout.as_secs(),
        missing: format!("{} never answered", named.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_address() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    }

    fn cluster(process_id: usize, addresses: &[String], timeout: Duration) -> Cluster {
        Cluster {
            process_id,
            addresses: addresses.to_vec(),
            connect_timeout: timeout,
        }
    }

    #[test]
    fn three_processes_connect_to_each_other_in_process_order() {
        let addresses: Vec<String> = (0..3).map(|_| free_address()).collect();
        let handles: Vec<_> = (0..3)
            .map(|id| {
                let cluster = cluster(id, &addresses, Duration::from_secs(60));
                std::thread::spawn(move || connect(&cluster).unwrap())
            })
            .collect();
        for (id, handle) in handles.into_iter().enumerate() {
            let sockets = handle.join().unwrap();
            assert_eq!(sockets.len(), 3);
            for (peer, socket) in sockets.iter().enumerate() {
                assert_eq!(socket.is_none(), peer == id, "process {id}, peer {peer}");
            }
        }
    }

    #[test]
    fn a_peer_that_never_answers_is_named_after_the_timeout() {
        let addresses = [free_address(), free_address()];
        let error = connect(&cluster(1, &addresses, Duration::from_millis(300))).unwrap_err();
        let error = error.downcast::<ClusterDidNotForm>().unwrap();
        assert!(error.missing.contains("process 0"), "{error}");

        let error = connect(&cluster(0, &addresses, Duration::from_millis(300))).unwrap_err();
        assert!(error.to_string().contains("process 1"), "{error}");
    }

    #[test]
    fn strangers_and_silent_connections_do_not_keep_a_peer_out() {
        let addresses: Vec<String> = (0..2).map(|_| free_address()).collect();
        let first = cluster(0, &addresses, Duration::from_secs(60));
        let forming = std::thread::spawn(move || connect(&first));
        // Once process 0 listens: one connection says nothing, another sends what no process would.
        let silent = loop {
            if let Ok(stream) = TcpStream::connect(&addresses[0]) {
                break stream;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stranger = TcpStream::connect(&addresses[0]).unwrap();
        stranger.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let second = cluster(1, &addresses, Duration::from_secs(60));
        let sockets = connect(&second).unwrap();
        assert!(sockets[0].is_some() && sockets[1].is_none());
        let sockets = forming.join().unwrap().unwrap();
        assert!(sockets[0].is_none() && sockets[1].is_some());
        drop(silent);
    }
}
