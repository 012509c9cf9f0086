use clap::Parser;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOGSTATS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal, and never with NO_COLOR set (https://no-color.org).
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .init();
    match logstats::app::run(logstats::cli::Cli::parse()) {
        Ok(status) => std::process::ExitCode::from(status),
        Err(error) => {
            eprintln!("error: {}", logstats::errors::one_line(&error));
            std::process::ExitCode::FAILURE
        }
    }
}
