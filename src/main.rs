/// jemalloc, returning freed pages within half a second: with glibc's per-thread arenas the many
/// small group states that workers allocate and the committer frees kept the process's RSS at three
/// times `--memory-limit` (mimalloc: four times, at the peak).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts (the `_RJEM_MALLOC_CONF` variable still overrides them).
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_OPTIONS: &[u8; 59] =
    b"background_thread:true,dirty_decay_ms:500,muzzy_decay_ms:0\0";

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOGSTATS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,async_nats=off")),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal, and never with NO_COLOR set (https://no-color.org).
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .init();
    match logstats::app::run(logstats::cli::Cli::from_args()) {
        Ok(status) => std::process::ExitCode::from(status),
        Err(error) => {
            eprintln!("error: {}", logstats::errors::one_line(&error));
            // 3: a cluster did not form in time; 4: it lost a peer (the others exit 1).
            let status = if error.is::<logstats::pipeline::ClusterDidNotForm>() {
                3
            } else if error.is::<logstats::pipeline::PeerLost>() {
                logstats::pipeline::PEER_LOST_EXIT_STATUS
            } else {
                1
            };
            std::process::ExitCode::from(status)
        }
    }
}
