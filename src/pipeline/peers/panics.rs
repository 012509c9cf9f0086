//! Panics caused by a lost peer, kept off stderr: a panic of timely's network thread for a peer
//! loses that peer, and once a peer is lost, a panic anywhere is its consequence; both are logged
//! at debug level instead (`LOGSTATS_LOG=debug`). Any other panic is shown as it would be without
//! this hook: a bug stays visible.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::{Cause, PeerWatch};

/// The watch of the cluster this process runs in, for the panic hook.
static WATCHED: Mutex<Weak<PeerWatch>> = Mutex::new(Weak::new());

/// Installs the hook (once per process), for the cluster `watch` watches.
pub(super) fn contain(watch: &Arc<PeerWatch>) {
    *WATCHED.lock().unwrap_or_else(PoisonError::into_inner) = Arc::downgrade(watch);
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !contained(info) {
                previous(info);
            }
        }));
    });
}

fn contained(info: &std::panic::PanicHookInfo<'_>) -> bool {
    let Some(watch) = WATCHED
        .try_lock()
        .ok()
        .and_then(|watched| watched.upgrade())
    else {
        return false;
    };
    let thread = std::thread::current();
    let name = thread.name().unwrap_or_default();
    let network_peer = ["timely:send-", "timely:recv-"]
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix)?.parse::<usize>().ok());
    let message = info
        .payload()
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_default();
    if let Some(peer) = network_peer {
        tracing::debug!(thread = name, "{info}");
        watch.lose(peer, Cause::Panicked(message));
        return true;
    }
    if watch.lost().is_some() {
        tracing::debug!(thread = name, "after a lost peer: {info}");
        return true;
    }
    false
}
