//! The binary: parse flags, load settings, set up logging, bind, run until a signal.
//! SIGINT/SIGTERM stop gracefully; SIGHUP reloads the configuration (log level, TLS certificate,
//! NATS settings, operator and system-account JWTs) without dropping the listener.

use anyhow::Context;
use nats_account_server::config::cli::Command;
use nats_account_server::config::{Cli, LoadReport, LoggingSettings, Settings, ALL_INTERFACES};
use nats_account_server::import;
use nats_account_server::link::error_chain;
use nats_account_server::server::{check_files, load_trust, RunningServer};
use std::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

type FilterHandle = reload::Handle<EnvFilter, Registry>;

fn main() -> std::process::ExitCode {
    let cli = match Cli::parse_args(std::env::args()) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2.into() } else { 0.into() };
        }
    };
    match run(cli) {
        Ok(()) => 0.into(),
        Err(e) => {
            // One line: the message and each cause in its chain that it does not already say.
            eprintln!("nats-account-server: {}", error_chain(e.as_ref()));
            1.into()
        }
    }
}

fn load(cli: &Cli) -> anyhow::Result<(Settings, LoadReport)> {
    let overrides = cli.overrides().map_err(anyhow::Error::msg)?;
    Ok(Settings::load(
        cli.config.as_deref(),
        std::env::vars(),
        &overrides,
    )?)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let (settings, report) = load(&cli)?;
    if let Some(Command::CheckConfig) = &cli.command {
        // Every file a start would read, read and checked the same way.
        check_files(&settings)?;
        println!("configuration OK");
        return Ok(());
    }
    let filter = init_logging(&settings.logging);
    for key in &report.ignored_keys {
        tracing::warn!(key = %key, "config key from the Go account server is not supported here and is ignored");
    }
    for (key, reason) in &report.ignored_with_reason {
        tracing::warn!(key = %key, "config key {key} is {reason}");
    }
    if !report.ignored_env.is_empty() {
        // One line for all: Kubernetes alone sets seven for a Service named `nas`.
        tracing::warn!(
            variables = %report.ignored_env.join(" "),
            "NAS_ environment variables that name no setting are ignored (a setting is NAS_<KEY> or NAS_<SECTION>__<KEY>, e.g. NAS_HTTP__PORT)"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if let Some(Command::Import(args)) = &cli.command {
        let summary = runtime.block_on(import::run(&settings, args))?;
        print!("{summary}");
        return Ok(());
    }
    runtime.block_on(serve(cli, settings, filter))
}

/// Binds the HTTP listener on `host:port` (an IPv6 address in brackets or not). All interfaces
/// ([`ALL_INTERFACES`], `::`, what an empty host means, as Go's `net.Listen(":9090")`) take
/// IPv4 connections too: Linux's IPv6 sockets are dual-stack unless `net.ipv6.bindv6only` is
/// set. A host without IPv6 gets every IPv4 interface instead.
fn bind_http(host: &str, port: u16) -> anyhow::Result<TcpListener> {
    let bind = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    match TcpListener::bind(&bind) {
        Err(e)
            if host == ALL_INTERFACES
                && !matches!(
                    e.kind(),
                    std::io::ErrorKind::AddrInUse | std::io::ErrorKind::PermissionDenied
                ) =>
        {
            let v4 = format!("0.0.0.0:{port}");
            tracing::info!(cause = %e, "no IPv6 here: listening on every IPv4 interface");
            TcpListener::bind(&v4).with_context(|| format!("binding HTTP listener on {v4}"))
        }
        bound => bound.with_context(|| format!("binding HTTP listener on {bind}")),
    }
}

async fn serve(cli: Cli, settings: Settings, filter: FilterHandle) -> anyhow::Result<()> {
    let listener = bind_http(&settings.http.host, settings.http.port)?;
    let server = RunningServer::start(settings, listener).await?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => reload(&cli, &server, &filter).await,
        }
    }
    tracing::info!("shutting down");
    server.stop().await;
    Ok(())
}

/// SIGHUP: re-read the configuration; apply what can change live, keep the rest.
async fn reload(cli: &Cli, server: &RunningServer, filter: &FilterHandle) {
    let settings = match load(cli) {
        Ok((s, _)) => s,
        Err(e) => {
            tracing::error!(cause = %error_chain(e.as_ref()), "reload failed; keeping the running configuration");
            return;
        }
    };
    let _ = filter.reload(env_filter(&settings.logging));
    if let Err(e) = server.reload_tls() {
        tracing::error!(cause = %e, "TLS reload failed; keeping the running certificate");
    }
    if let Err(e) = server.reconfigure_nats(&settings.nats).await {
        tracing::error!(cause = %e, "NATS reload failed; keeping the running connection");
    }
    match load_trust(&settings).map(|trust| server.reload_trust(trust)) {
        Ok(Ok(())) => {
            tracing::info!(
                "configuration reloaded (log level, TLS certificate, NATS, operator, system account)"
            );
        }
        Ok(Err(e)) => {
            tracing::error!(cause = %e, "reload failed; keeping the running trust anchor")
        }
        Err(e) => tracing::error!(cause = %e, "reload failed; keeping the running trust anchor"),
    }
}

fn env_filter(logging: &LoggingSettings) -> EnvFilter {
    let level = if logging.trace {
        "trace"
    } else if logging.debug {
        "debug"
    } else {
        "info"
    };
    // Our crate at the chosen level; dependencies one notch quieter unless tracing.
    let deps = if logging.trace { "debug" } else { "warn" };
    EnvFilter::new(format!("{deps},nats_account_server={level}"))
}

fn init_logging(logging: &LoggingSettings) -> FilterHandle {
    let (filter, handle) = reload::Layer::new(env_filter(logging));
    let registry = tracing_subscriber::registry().with(filter);
    let base = fmt::layer().with_ansi(logging.colors).with_target(false);
    match (logging.json, logging.time) {
        (true, _) => registry.with(fmt::layer().json().with_target(false)).init(),
        (false, true) => registry.with(base).init(),
        (false, false) => registry.with(base.without_time()).init(),
    }
    handle
}
