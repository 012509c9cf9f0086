use clap::Parser;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOGSTATS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match logstats::app::run(logstats::cli::Cli::parse()) {
        Ok(status) => std::process::ExitCode::from(status),
        Err(error) => {
            eprintln!("error: {}", logstats::errors::one_line(&error));
            std::process::ExitCode::FAILURE
        }
    }
}
