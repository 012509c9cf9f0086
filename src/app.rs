//! What each subcommand does, given its parsed arguments.

use std::io::{IsTerminal, Write};

use anyhow::Context;

use crate::api::{ApiOptions, AppState, ConnectionLimits, router_with};
use crate::cli::{Cli, Command, DemoArgs, GenerateArgs, IngestArgs, ShipArgs};
use crate::generate::{GenerateConfig, generate};
use crate::pipeline::{IngestConfig, IngestReport, ingest};
use crate::store::{BlockingStore, Store};

/// Runs one command to completion; the exit status says whether it finished (0) or why not.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Ingest(args) => run_ingest(&args),
        Command::Ship(args) => run_ship(&args),
        command => run_command(command).map(|()| 0),
    }
}

fn run_command(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Generate(args) => generate_log(&args),
        Command::Migrate(db) => runtime()?.block_on(async {
            Store::connect(&db.url).await?;
            eprintln!("database schema is up to date");
            Ok(())
        }),
        Command::Ingest(args) => run_ingest(&args).map(|_| ()),
        Command::Ship(args) => run_ship(&args).map(|_| ()),
        Command::Serve(args) => {
            let options = args.options()?;
            let limits = args.connection_limits()?;
            runtime()?.block_on(async {
                let listener = bind(&args.listen.bind).await?;
                serve(&args.db.url, listener, options, limits).await
            })
        }
        Command::Demo(args) => demo(&args),
        Command::Completions(args) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut command, "logstats", &mut std::io::stdout());
            Ok(())
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn generate_log(args: &GenerateArgs) -> anyhow::Result<()> {
    let config = args.config();
    match &args.output {
        Some(path) if crate::nats::StreamUrl::is_stream(&path.to_string_lossy()) => {
            let url = crate::nats::StreamUrl::parse(&path.to_string_lossy())?.for_publishing()?;
            let published = crate::generate::publish(&config, &url)?;
            eprintln!(
                "published {} lines in {published} messages to {}",
                config.lines,
                url.key()
            );
            Ok(())
        }
        Some(path) => write_log(&config, path),
        None => Ok(generate(&config, &mut std::io::stdout().lock())?),
    }
}

fn write_log(config: &GenerateConfig, path: &std::path::Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    generate(config, &mut std::io::BufWriter::new(file))
        .with_context(|| format!("writing {}", path.display()))
}

fn run_ship(args: &ShipArgs) -> anyhow::Result<u8> {
    let config = args.config()?;
    let report = crate::ship::ship(&config)?;
    for problem in &report.problems {
        eprintln!("warning: {problem}");
    }
    for path in &report.waiting {
        eprintln!("note: {path} ends in a line without a newline: it is shipped once complete");
    }
    eprintln!("{}", report.summary_line(&config.url));
    if let Some(reason) = &report.gave_up {
        eprintln!("error: {reason}");
    }
    // A follower stopped by a signal has done its job, as `ingest --follow` has.
    Ok(if config.follow { 0 } else { report.exit_code() })
}

fn run_ingest(args: &IngestArgs) -> anyhow::Result<u8> {
    let mut config = args.config()?;
    config.progress_bar = std::io::stderr().is_terminal() && !args.json;
    if !config.follow
        && let Some(problem) = nothing_to_read(&config.inputs)?
    {
        // Said before connecting: a database is not created for nothing.
        anyhow::bail!("{problem}");
    }
    let store = BlockingStore::connect(&args.db.url)?;
    if config.follow {
        eprintln!("{}", following_line(&config, &args.db.url, &store)?);
    }
    let report = ingest(config, store)?;
    print_report(&report, args.follow);
    if args.json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    }
    Ok(report.exit_code())
}

/// Why none of `inputs` can be read, when none can: every one is a path that does not exist (or
/// a pattern that matches no file). A stream, standard input, a file or a directory is something
/// to read (a directory may hold nothing yet, which is no error).
fn nothing_to_read(inputs: &[String]) -> anyhow::Result<Option<String>> {
    let mut unreadable = Vec::new();
    for input in inputs {
        if input == "-" || crate::nats::StreamUrl::is_stream(input) {
            return Ok(None);
        }
        if std::fs::metadata(input).is_ok_and(|meta| meta.is_file() || meta.is_dir()) {
            return Ok(None);
        }
        unreadable.push(input.clone());
    }
    let found = crate::pipeline::source::discover(&unreadable, None)?;
    Ok(match found.sources.is_empty() {
        true => found.problems.into_iter().next(),
        false => None,
    })
}

/// What `ingest --follow` says when it starts: what it follows (the files found now, and any
/// left out as not text), where to, how often it commits.
fn following_line(
    config: &IngestConfig,
    database_url: &str,
    store: &BlockingStore,
) -> anyhow::Result<String> {
    let is_stream = |input: &String| crate::nats::StreamUrl::is_stream(input);
    let paths: Vec<String> = config
        .inputs
        .iter()
        .filter(|i| !is_stream(i))
        .cloned()
        .collect();
    let pattern = crate::pipeline::source::name_pattern(config.glob.as_deref())?;
    let mut found = crate::pipeline::source::discover(&paths, pattern.as_ref())?;
    let database: Vec<_> = store
        .own_files()
        .into_iter()
        .map(|path| (path, "this run's database"))
        .collect();
    found.leave_out(&database);
    if let Some(note) = found.not_text_note() {
        eprintln!("note: {note}");
    }
    let mut inputs: Vec<String> = paths
        .iter()
        .map(|path| crate::errors::escaped(path.as_bytes()))
        .collect();
    inputs.extend(config.inputs.iter().filter(|i| is_stream(i)).map(|input| {
        crate::nats::StreamUrl::parse(input)
            .map_or_else(|_| crate::store::redact(input), |url| url.key())
    }));
    Ok(format!(
        "following {} ({} file(s) now; appended lines, new and rotated files) into {}, \
         committing every {} s; SIGINT or SIGTERM commits what was read and stops",
        inputs.join(", "),
        found.sources.len(),
        crate::store::redact(database_url),
        config.flush_interval.as_secs_f64()
    ))
}

fn print_report(report: &IngestReport, followed: bool) {
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    for problem in &report.unreadable {
        eprintln!("warning: {problem}");
    }
    if report.rejected > 0 {
        let reasons: Vec<String> = report
            .rejected_by_reason
            .iter()
            .map(|(code, n)| format!("{code}: {n}"))
            .collect();
        eprintln!("rejected lines by reason: {}", reasons.join(", "));
        for sample in &report.reject_samples {
            eprintln!("  {sample}");
        }
    }
    match followed {
        true => eprintln!("{}", report.followed_summary_line()),
        false => eprintln!("{}", report.summary_line()),
    }
}

/// Listens on `address` (`host:port`; a host name is resolved).
pub async fn bind(address: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding {address}"))
}

/// Serves the API on `listener` until SIGINT/SIGTERM (requests in flight finish); starts even
/// when the database is down (answers 503).
pub async fn serve(
    database_url: &str,
    listener: tokio::net::TcpListener,
    options: ApiOptions,
    limits: ConnectionLimits,
) -> anyhow::Result<()> {
    crate::api::raise_open_file_limit();
    let read_limits = crate::store::ReadLimits {
        query_timeout: options.request_timeout,
    };
    let store = Store::serving(database_url, read_limits)?;
    // Listening already: a database that is down is found (and logged once) in the background,
    // and requests get 503 until it answers. The store migrates on its first good read.
    let probe = store.clone();
    tokio::spawn(async move { probe.ping().await });
    let address = listener.local_addr()?;
    match &options.api_keys {
        Some(keys) => eprintln!("API keys required for /customers ({} keys)", keys.len()),
        None => tracing::info!("no --api-keys: the API is open"),
    }
    eprintln!("serving on http://{address} (API docs: http://{address}/docs)");
    let app = router_with(
        AppState {
            store: store.clone(),
        },
        options,
    );
    crate::api::serve_connections(listener, app, limits, shutdown_signal()).await;
    store.close().await;
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = interrupt => {},
        _ = terminate.recv() => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    if !args.log.exists() {
        eprintln!("generating a sample log at {}", args.log.display());
        write_log(&GenerateConfig::default(), &args.log)?;
    }
    let mut config = IngestConfig::new(vec![args.log.display().to_string()]);
    config.progress_bar = std::io::stderr().is_terminal();
    print_report(
        &ingest(config, BlockingStore::connect(&args.db.url)?)?,
        false,
    );
    runtime()?.block_on(async {
        // Bound first: a port that is taken fails before any hint is printed.
        let listener = bind(&args.listen.bind).await?;
        let address = listener.local_addr()?;
        eprintln!("try: curl 'http://{address}/customers/cust_1/stats?from=2024-09-03'");
        eprintln!("dashboard: http://{address}/?customer=cust_1");
        serve(
            &args.db.url,
            listener,
            ApiOptions::default(),
            ConnectionLimits::default(),
        )
        .await
    })
}
