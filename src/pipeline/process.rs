//! What a run needs from its process, apart from the dataflow: the signals that stop it and the
//! progress bar drawn from the workers' counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::job::Job;

/// SIGINT and SIGTERM set the returned stop flag (and record which signal came); a second signal
/// ends the process at once, whatever it is waiting for.
pub(super) fn stop_on_signals() -> anyhow::Result<(Arc<AtomicBool>, Arc<AtomicUsize>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let which = Arc::new(AtomicUsize::new(0));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registered first, so it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(&stop))?;
        signal_hook::flag::register_usize(signal, Arc::clone(&which), signal as usize)?;
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    Ok((stop, which))
}

/// A progress bar on a terminal (bytes, lines/s, ETA), drawn from the workers' counters.
pub(super) fn progress_bar(job: &Arc<Job>) -> Option<indicatif::ProgressBar> {
    if !job.config.progress_bar {
        return None;
    }
    let stream_bytes: u64 = job.streams.iter().map(|s| s.bytes).sum();
    let bar = indicatif::ProgressBar::new(job.plan.total_bytes() + stream_bytes);
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg} ETA {eta}",
    )
    .expect("a valid template");
    bar.set_style(style);
    let shown = bar.clone();
    let job = Arc::clone(job);
    std::thread::spawn(move || {
        let started = Instant::now();
        while !shown.is_finished() {
            shown.set_position(job.bytes_read.load(Ordering::Relaxed));
            let lines = job.lines_read.load(Ordering::Relaxed) as f64;
            shown.set_message(format!(
                "{:.2} M lines/s",
                lines / started.elapsed().as_secs_f64() / 1e6
            ));
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    Some(bar)
}
