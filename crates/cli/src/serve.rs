//! `airlock serve` and `airlock keys`: settings from the file, the environment and flags, turned
//! into the runtime's and the server's typed configuration. `anyhow` stops here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use airlock_runtime::{NetworkConfig, Runtime, RuntimeConfig, SandboxLimits};
use anyhow::{bail, Context};

use crate::args::{KeysAction, KeysArgs, ServeArgs};
use crate::config::{self, Config, LogFormat, ServerSettings};

/// `airlock serve`.
pub fn main(args: &ServeArgs) -> i32 {
    match serve(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("airlock serve: {e:#}");
            1
        }
    }
}

/// `airlock keys`.
pub fn keys(args: &KeysArgs) -> i32 {
    match manage_keys(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("airlock keys: {e:#}");
            1
        }
    }
}

fn load_config(explicit: Option<&Path>) -> anyhow::Result<Config> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let env_config = std::env::var_os(config::CONFIG_ENV);
    let path = config::locate(explicit, env_config.as_deref(), home.as_deref())?;
    Ok(match path {
        Some(path) => config::load(&path)?,
        None => Config::default(),
    })
}

/// An environment variable, unless unset or empty.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn settings(config: &Config) -> anyhow::Result<ServerSettings> {
    Ok(config.server_settings(&env_var)?)
}

/// The data directory: flag, then settings, then the per-user default.
fn data_dir(flag: Option<&Path>, settings: &ServerSettings) -> anyhow::Result<PathBuf> {
    if let Some(dir) = flag.map(Path::to_path_buf).or_else(|| settings.data_dir.clone()) {
        return Ok(dir);
    }
    if nix::unistd::geteuid().is_root() {
        return Ok(PathBuf::from("/var/lib/airlock"));
    }
    let base = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set; pass --data-dir")?)
            .join(".local/share"),
    };
    Ok(base.join("airlock"))
}

fn init_logging(format: LogFormat) {
    let filter = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("LOG_LEVEL"))
        .unwrap_or_else(|_| "info".to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}

fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref())?;
    let mut settings = settings(&config)?;
    if let Some(address) = &args.address {
        settings.address =
            address.parse().with_context(|| format!("--address {address:?} is not an IP address"))?;
    }
    if let Some(port) = args.port {
        settings.port = port;
    }
    if let Some(pool) = args.pool_size {
        settings.pool_size = pool;
    }
    init_logging(args.log_format.unwrap_or(settings.log_format));
    let data_dir = data_dir(args.data_dir.as_deref(), &settings)?;
    let resolved = config.resolve(None)?;
    let default_limits = SandboxLimits {
        memory_bytes: resolved.memory_bytes.unwrap_or(256 << 20),
        max_pids: resolved.max_pids.unwrap_or(128),
        cpu_millis: resolved.cpu_millis,
        max_open_files: resolved.max_open_files.unwrap_or(1024),
        max_file_bytes: resolved.max_file_bytes,
        tmp_size_bytes: resolved.tmp_size_bytes.unwrap_or(64 << 20),
    };
    let templates = settings.templates(&default_limits)?;
    let cgroup = crate::request::cgroup_preference(resolved.platform.cgroups_version);
    let protections = crate::request::protections(&resolved.platform, cgroup);
    let runtime_config = RuntimeConfig {
        data_dir: data_dir.clone(),
        airlock_exe: std::env::current_exe().context("cannot find the airlock binary itself")?,
        protections,
        default_limits,
        max_limits: settings.max_limits.clone(),
        default_ttl: settings.default_ttl_seconds.map(Duration::from_secs),
        max_ttl: settings.max_ttl_seconds.map(Duration::from_secs),
        max_sandboxes: settings.max_sandboxes,
        max_concurrent_commands: settings.max_concurrent_commands,
        max_output_bytes: settings.max_command_output_bytes,
        pool_size: settings.pool_size,
        network: NetworkConfig {
            own_addresses: own_addresses(SocketAddr::new(settings.address, settings.port)),
            ..settings.network.clone()
        },
        templates,
    };
    let features = serde_json::json!({
        "user_namespaces": true,
        "pid_namespace": true,
        "network_namespace": true,
        "seccomp": protections.seccomp,
        "landlock": format!("{:?}", protections.landlock).to_lowercase(),
        "cgroup": format!("{:?}", protections.cgroup).to_lowercase(),
        "rootless": !nix::unistd::geteuid().is_root(),
        "network": if settings.network.allow_host { vec!["none", "allowlist", "host"] } else { vec!["none", "allowlist"] },
    });
    let front_doors = airlock_server::compat::FrontDoors {
        opensandbox: settings.opensandbox.clone(),
        sandbox_runtime: config::sandbox_runtime::settings(&env_var)?,
        executor: config::executor::settings(&env_var)?,
    };
    let address = SocketAddr::new(settings.address, settings.port);
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    tokio.block_on(async move {
        let runtime = Runtime::open(runtime_config)
            .await
            .with_context(|| format!("cannot open the data directory {}", data_dir.display()))?;
        let keys = runtime.with_store(|s| s.keys())?.len();
        if keys == 0 && !settings.address.is_loopback() {
            bail!(
                "refusing to listen on {address} without API keys: anyone who can reach it could run code. \
                 Create a key with `airlock keys create --data-dir {}`, or listen on 127.0.0.1",
                data_dir.display()
            );
        }
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let bound = listener.local_addr()?;
        if keys == 0 {
            tracing::warn!("no API keys: listening on loopback only, and requests need no key");
        }
        tracing::info!(address = %bound, data_dir = %data_dir.display(), keys, "airlock serve: listening on http://{bound}");
        let options = airlock_server::ServeOptions {
            listener,
            require_keys: !settings.address.is_loopback(),
            features,
            front_doors,
        };
        airlock_server::serve(runtime, options, stop_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// The sockets the server listens on, which no sandbox may reach through its egress proxy: the
/// address itself, or for a wildcard address the port on every address of the host.
fn own_addresses(listen: SocketAddr) -> Vec<(IpAddr, u16)> {
    let port = listen.port();
    if !listen.ip().is_unspecified() {
        return vec![(listen.ip(), port)];
    }
    let mut own = vec![(IpAddr::from(Ipv4Addr::LOCALHOST), port), (IpAddr::from(Ipv6Addr::LOCALHOST), port)];
    for interface in nix::ifaddrs::getifaddrs().into_iter().flatten() {
        let Some(address) = interface.address else { continue };
        if let Some(v4) = address.as_sockaddr_in() {
            own.push((IpAddr::V4(v4.ip()), port));
        } else if let Some(v6) = address.as_sockaddr_in6() {
            own.push((IpAddr::V6(v6.ip()), port));
        }
    }
    own
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn manage_keys(args: &KeysArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref())?;
    let settings = settings(&config)?;
    let dir = data_dir(args.data_dir.as_deref(), &settings)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let store = airlock_runtime::Store::open(&dir.join("airlock.db"))
        .with_context(|| format!("cannot open the store in {}", dir.display()))?;
    match &args.action {
        KeysAction::Create { name } => {
            let created = airlock_runtime::keys::create(&store, name)?;
            println!(
                "{}",
                serde_json::json!({ "id": created.key.id, "name": created.key.name, "key": created.secret })
            );
            eprintln!("keep the key: it is shown only this once. A running server requires keys from now on");
        }
        KeysAction::List => {
            for key in store.keys()? {
                println!(
                    "{}",
                    serde_json::json!({ "id": key.id, "name": key.name, "created_ms": key.created_ms })
                );
            }
        }
        KeysAction::Delete { id } => {
            if !store.remove_key(id)? {
                bail!("no key {id}; `airlock keys list` shows the ids");
            }
        }
    }
    Ok(())
}
