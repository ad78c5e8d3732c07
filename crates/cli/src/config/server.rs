//! `[server]`: the settings of `airlock serve`, layered as built-in defaults, then the file,
//! then `AIRLOCK_*` environment variables (and `PORT`), then command-line flags.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use airlock_runtime::egress::policy::Target;
use airlock_runtime::{NetworkConfig, SandboxLimits, Template, DEFAULT_TEMPLATE};
use airlock_server::compat::opensandbox::Settings as OpenSandboxSettings;
use serde::Deserialize;

use super::limits::Field;
use super::resolve::quantity;
use super::schema::{Config, Quantity, Resources};
use super::ConfigError;

/// `[server]` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address to listen on.
    pub address: Option<String>,
    /// TCP port.
    pub port: Option<u16>,
    /// Directory of the store and the workspaces.
    pub data_dir: Option<PathBuf>,
    /// Pre-started sandboxes kept ready.
    pub pool_size: Option<u64>,
    /// Time to live of a sandbox created without one, in seconds; 0 for none.
    pub default_ttl_seconds: Option<u64>,
    /// Longest time to live allowed, in seconds; 0 for no maximum.
    pub max_ttl_seconds: Option<u64>,
    /// Sandboxes that may exist at once.
    pub max_sandboxes: Option<u64>,
    /// Commands that may run at once.
    pub max_concurrent_commands: Option<u64>,
    /// Output kept per command (and the largest cap a request may ask for).
    pub max_command_output_bytes: Option<Quantity>,
    /// `text` or `json` log lines.
    pub log_format: Option<LogFormat>,
    /// `[server.max_limits]`: the most a sandbox may ask for.
    #[serde(default)]
    pub max_limits: Resources,
    /// `[server.network]`: what sandboxes may reach.
    #[serde(default)]
    pub network: NetworkSection,
    /// `[server.templates.NAME]`: named presets for new sandboxes.
    #[serde(default)]
    pub templates: BTreeMap<String, TemplateSection>,
    /// `[server.opensandbox]`: the OpenSandbox front door.
    #[serde(default)]
    pub opensandbox: OpenSandboxSection,
}

/// `[server.templates.NAME]` as written: what differs from the server's defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSection {
    /// Limits, as in `[defaults.resources]`; what is left out keeps the default.
    #[serde(default)]
    pub resources: Resources,
    /// Variables set for every command.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Default working directory of commands.
    pub workdir: Option<String>,
}

/// `[server.opensandbox]` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenSandboxSection {
    /// Image name to template name.
    #[serde(default)]
    pub images: BTreeMap<String, String>,
    /// Refuse images that `images` does not name, instead of giving them the default template.
    pub only_mapped_images: Option<bool>,
}

/// `[server.network]` as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// Whether a sandbox may ask for the host's network.
    pub allow_host: Option<bool>,
    /// Names the egress proxy resolves to these addresses instead of asking DNS.
    #[serde(default)]
    pub hosts: BTreeMap<String, HostAddresses>,
}

/// One address or several.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum HostAddresses {
    /// `"203.0.113.7"`.
    One(String),
    /// `["203.0.113.7", "2001:db8::7"]`.
    Many(Vec<String>),
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// For people.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[server]` with every default filled in and every value checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// Address to listen on.
    pub address: IpAddr,
    /// TCP port.
    pub port: u16,
    /// Directory of the store and the workspaces; none for the per-user default.
    pub data_dir: Option<PathBuf>,
    /// Pre-started sandboxes.
    pub pool_size: usize,
    /// Default time to live in seconds; none for no expiry.
    pub default_ttl_seconds: Option<u64>,
    /// Maximum time to live in seconds; none for no maximum.
    pub max_ttl_seconds: Option<u64>,
    /// Sandboxes at once.
    pub max_sandboxes: usize,
    /// Commands at once.
    pub max_concurrent_commands: usize,
    /// Output kept per command.
    pub max_command_output_bytes: u64,
    /// Log line format.
    pub log_format: LogFormat,
    /// The most a sandbox may ask for.
    pub max_limits: SandboxLimits,
    /// Network settings; the server's own addresses are filled in when it starts.
    pub network: NetworkConfig,
    /// The OpenSandbox front door's settings.
    pub opensandbox: airlock_server::compat::opensandbox::Settings,
    /// `[server.templates]`, checked; limits are resolved over the defaults by [`templates`].
    pub templates: BTreeMap<String, TemplateSection>,
}

/// Environment variables that override `[server]`, with the key each one sets.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("AIRLOCK_ADDRESS", "address"),
    ("AIRLOCK_PORT", "port"),
    ("PORT", "port"),
    ("AIRLOCK_DATA_DIR", "data_dir"),
    ("AIRLOCK_POOL_SIZE", "pool_size"),
    // The Sandbox Runtime's name for the same setting.
    ("SANDBOX_POOL_SIZE", "pool_size"),
    ("AIRLOCK_DEFAULT_TTL_SECONDS", "default_ttl_seconds"),
    ("AIRLOCK_MAX_TTL_SECONDS", "max_ttl_seconds"),
    ("AIRLOCK_MAX_SANDBOXES", "max_sandboxes"),
    ("AIRLOCK_MAX_CONCURRENT_COMMANDS", "max_concurrent_commands"),
    ("AIRLOCK_MAX_COMMAND_OUTPUT_BYTES", "max_command_output_bytes"),
    ("AIRLOCK_LOG_FORMAT", "log_format"),
];

fn count(field: &str, value: u64, range: std::ops::RangeInclusive<u64>) -> Result<u64, ConfigError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        let expected = format!("{} to {}", range.start(), range.end());
        Err(ConfigError::invalid_value(field, &value.to_string(), "out of range", &expected))
    }
}

impl Config {
    /// Resolve `[server]` over the built-in defaults, then apply `env` (a lookup of
    /// environment variables, see [`ENV_OVERRIDES`]).
    pub fn server_settings(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ServerSettings, ConfigError> {
        let mut s = Config::builtin().server.clone();
        let file = &self.server;
        macro_rules! over {
            ($($f:ident),*) => { $( if file.$f.is_some() { s.$f = file.$f.clone(); } )* };
        }
        over!(
            address,
            port,
            data_dir,
            pool_size,
            default_ttl_seconds,
            max_ttl_seconds,
            max_sandboxes,
            max_concurrent_commands,
            max_command_output_bytes,
            log_format
        );
        merge_resources(&mut s.max_limits, &file.max_limits);
        if file.network.allow_host.is_some() {
            s.network.allow_host = file.network.allow_host;
        }
        s.network.hosts.extend(file.network.hosts.clone());
        s.templates.extend(file.templates.clone());
        s.opensandbox.images.extend(file.opensandbox.images.clone());
        if file.opensandbox.only_mapped_images.is_some() {
            s.opensandbox.only_mapped_images = file.opensandbox.only_mapped_images;
        }
        for (var, key) in ENV_OVERRIDES {
            let Some(value) = env(var) else { continue };
            let number = || {
                value
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| ConfigError::invalid_value(var, &value, "not a whole number", "a number"))
            };
            match *key {
                "address" => s.address = Some(value.clone()),
                "port" => {
                    s.port =
                        Some(u16::try_from(number()?).map_err(|_| {
                            ConfigError::invalid_value(var, &value, "out of range", "1 to 65535")
                        })?)
                }
                "data_dir" => s.data_dir = Some(PathBuf::from(&value)),
                "pool_size" => s.pool_size = Some(number()?),
                "default_ttl_seconds" => s.default_ttl_seconds = Some(number()?),
                "max_ttl_seconds" => s.max_ttl_seconds = Some(number()?),
                "max_sandboxes" => s.max_sandboxes = Some(number()?),
                "max_concurrent_commands" => s.max_concurrent_commands = Some(number()?),
                "max_command_output_bytes" => {
                    s.max_command_output_bytes = Some(Quantity::Text(value.clone()))
                }
                "log_format" => {
                    s.log_format = Some(match value.trim() {
                        "text" => LogFormat::Text,
                        "json" => LogFormat::Json,
                        _ => {
                            return Err(ConfigError::invalid_value(
                                var,
                                &value,
                                "not a log format",
                                "text or json",
                            ))
                        }
                    })
                }
                _ => {}
            }
        }
        settle(&s)
    }
}

/// Check a file's `[server]` on its own, as loading does for every section.
pub(super) fn validate(section: &ServerSection) -> Result<(), ConfigError> {
    settle(section).map(|_| ())
}

fn merge_resources(base: &mut Resources, over: &Resources) {
    macro_rules! over {
        ($($f:ident),*) => { $( if over.$f.is_some() { base.$f = over.$f.clone(); } )* };
    }
    over!(memory_bytes, cpu, max_pids, max_file_bytes, max_open_files, tmp_size_bytes);
}

fn settle(s: &ServerSection) -> Result<ServerSettings, ConfigError> {
    let address_text = s.address.clone().unwrap_or_else(|| "127.0.0.1".to_owned());
    let address = address_text.parse::<IpAddr>().map_err(|_| {
        ConfigError::invalid_value(
            "server.address",
            &address_text,
            "not an IP address",
            "e.g. 127.0.0.1 or 0.0.0.0",
        )
    })?;
    let port = s.port.unwrap_or(8080);
    if port == 0 {
        return Err(ConfigError::invalid_value("server.port", "0", "out of range", "1 to 65535"));
    }
    let positive = |v: Option<u64>| v.filter(|&n| n > 0);
    let max = &s.max_limits;
    let size = |field: Field, name: &str, q: Option<&Quantity>, default: u64| -> Result<u64, ConfigError> {
        q.map_or(Ok(default), |q| quantity(field, &format!("server.max_limits.{name}"), q))
    };
    let max_limits = SandboxLimits {
        memory_bytes: size(Field::MemoryBytes, "memory_bytes", max.memory_bytes.as_ref(), 4 << 30)?,
        cpu_millis: max.cpu.as_ref().map(|q| quantity(Field::Cpu, "server.max_limits.cpu", q)).transpose()?,
        max_pids: count("server.max_limits.max_pids", max.max_pids.unwrap_or(1024), 1..=4_194_304)?,
        max_open_files: count(
            "server.max_limits.max_open_files",
            max.max_open_files.unwrap_or(4096),
            8..=1_048_576,
        )?,
        max_file_bytes: max
            .max_file_bytes
            .as_ref()
            .map(|q| quantity(Field::MaxFileBytes, "server.max_limits.max_file_bytes", q))
            .transpose()?,
        tmp_size_bytes: size(Field::TmpSizeBytes, "tmp_size_bytes", max.tmp_size_bytes.as_ref(), 1 << 30)?,
    };
    Ok(ServerSettings {
        address,
        port,
        data_dir: s.data_dir.clone(),
        pool_size: count("server.pool_size", s.pool_size.unwrap_or(0), 0..=1000)? as usize,
        default_ttl_seconds: positive(s.default_ttl_seconds),
        max_ttl_seconds: positive(s.max_ttl_seconds),
        max_sandboxes: count("server.max_sandboxes", s.max_sandboxes.unwrap_or(500), 1..=100_000)? as usize,
        max_concurrent_commands: count(
            "server.max_concurrent_commands",
            s.max_concurrent_commands.unwrap_or(256),
            1..=100_000,
        )? as usize,
        max_command_output_bytes: s.max_command_output_bytes.as_ref().map_or(Ok(16 << 20), |q| {
            quantity(Field::MaxOutputBytes, "server.max_command_output_bytes", q)
        })?,
        log_format: s.log_format.unwrap_or_default(),
        max_limits,
        network: NetworkConfig {
            allow_host: s.network.allow_host.unwrap_or(false),
            pinned_hosts: pinned_hosts(&s.network.hosts)?,
            own_addresses: Vec::new(),
        },
        opensandbox: opensandbox_settings(s)?,
        templates: s.templates.clone(),
    })
}

fn opensandbox_settings(s: &ServerSection) -> Result<OpenSandboxSettings, ConfigError> {
    for (name, template) in &s.templates {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(ConfigError::invalid_value(
                "server.templates",
                name,
                "not a template name",
                "letters, digits, - _ .",
            ));
        }
        if let Some(workdir) = template.workdir.as_deref().filter(|w| !w.starts_with('/')) {
            let field = format!("server.templates.{name}.workdir");
            return Err(ConfigError::invalid_value(
                &field,
                workdir,
                "not an absolute path",
                "e.g. /workspace",
            ));
        }
    }
    for (image, template) in &s.opensandbox.images {
        if template != DEFAULT_TEMPLATE && !s.templates.contains_key(template) {
            let field = format!("server.opensandbox.images.{image}");
            return Err(ConfigError::invalid_value(
                &field,
                template,
                "no such template",
                "a name from [server.templates]",
            ));
        }
    }
    Ok(OpenSandboxSettings {
        images: s.opensandbox.images.clone(),
        only_mapped_images: s.opensandbox.only_mapped_images.unwrap_or(false),
    })
}

impl ServerSettings {
    /// The templates, each one's limits resolved over `defaults` (the server's default limits).
    pub fn templates(&self, defaults: &SandboxLimits) -> Result<BTreeMap<String, Template>, ConfigError> {
        let mut templates = BTreeMap::new();
        for (name, section) in &self.templates {
            let r = &section.resources;
            let field = |key: &str| format!("server.templates.{name}.resources.{key}");
            let size = |f: Field, key: &str, q: Option<&Quantity>, default: u64| {
                q.map_or(Ok(default), |q| quantity(f, &field(key), q))
            };
            let limits = SandboxLimits {
                memory_bytes: size(
                    Field::MemoryBytes,
                    "memory_bytes",
                    r.memory_bytes.as_ref(),
                    defaults.memory_bytes,
                )?,
                max_pids: match r.max_pids {
                    Some(n) => count(&field("max_pids"), n, 1..=4_194_304)?,
                    None => defaults.max_pids,
                },
                cpu_millis: match &r.cpu {
                    Some(q) => Some(quantity(Field::Cpu, &field("cpu"), q)?),
                    None => defaults.cpu_millis,
                },
                max_open_files: match r.max_open_files {
                    Some(n) => count(&field("max_open_files"), n, 8..=1_048_576)?,
                    None => defaults.max_open_files,
                },
                max_file_bytes: match &r.max_file_bytes {
                    Some(q) => Some(quantity(Field::MaxFileBytes, &field("max_file_bytes"), q)?),
                    None => defaults.max_file_bytes,
                },
                tmp_size_bytes: size(
                    Field::TmpSizeBytes,
                    "tmp_size_bytes",
                    r.tmp_size_bytes.as_ref(),
                    defaults.tmp_size_bytes,
                )?,
            };
            let template = Template {
                limits,
                env: section.env.clone(),
                workdir: section.workdir.clone().unwrap_or_else(|| "/workspace".to_owned()),
            };
            templates.insert(name.clone(), template);
        }
        Ok(templates)
    }
}

fn pinned_hosts(
    hosts: &BTreeMap<String, HostAddresses>,
) -> Result<BTreeMap<String, Vec<IpAddr>>, ConfigError> {
    let mut pinned = BTreeMap::new();
    for (name, addresses) in hosts {
        let field = format!("server.network.hosts.{name}");
        let name = match Target::parse(name) {
            Ok(Target::Domain(name)) => name,
            _ => {
                return Err(ConfigError::invalid_value(
                    &field,
                    name,
                    "not a host name",
                    "a name such as pypi.internal",
                ))
            }
        };
        let texts = match addresses {
            HostAddresses::One(one) => std::slice::from_ref(one),
            HostAddresses::Many(many) => many.as_slice(),
        };
        if texts.is_empty() {
            return Err(ConfigError::invalid_value(
                &field,
                "[]",
                "no address",
                "one IP address or a list of them",
            ));
        }
        let ips = texts
            .iter()
            .map(|t| {
                t.parse::<IpAddr>().map_err(|_| {
                    ConfigError::invalid_value(&field, t, "not an IP address", "e.g. 203.0.113.7")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        pinned.insert(name, ips);
    }
    Ok(pinned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml: &str, env: &[(&str, &str)]) -> Result<ServerSettings, ConfigError> {
        let config = Config::from_toml(toml, std::path::Path::new("test.toml"))?;
        let lookup = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned());
        config.server_settings(&lookup)
    }

    #[test]
    fn defaults_then_file_then_environment() {
        let s = settings("", &[]).unwrap();
        assert_eq!((s.address.to_string(), s.port, s.pool_size), ("127.0.0.1".to_owned(), 8080, 2));
        let s = settings("[server]\nport = 9000\npool_size = 3\n", &[]).unwrap();
        assert_eq!((s.port, s.pool_size), (9000, 3));
        let s = settings("[server]\nport = 9000\n", &[("PORT", "9100"), ("AIRLOCK_POOL_SIZE", "0")]).unwrap();
        assert_eq!((s.port, s.pool_size), (9100, 0));
        let s = settings("", &[("AIRLOCK_PORT", "9200"), ("PORT", "9300")]).unwrap();
        assert_eq!(s.port, 9300, "PORT, the platform convention, is applied last");
    }

    #[test]
    fn templates_resolve_over_the_defaults_and_images_name_existing_ones() {
        let toml = "[server.templates.py]\nenv = { A = \"1\" }\n[server.templates.py.resources]\n\
                    memory_bytes = \"1G\"\n[server.opensandbox]\nonly_mapped_images = true\n\
                    [server.opensandbox.images]\n\"python:3.11\" = \"py\"\n\"ubuntu\" = \"default\"\n";
        let s = settings(toml, &[]).unwrap();
        assert!(s.opensandbox.only_mapped_images);
        assert_eq!(s.opensandbox.images["python:3.11"], "py");
        let defaults = SandboxLimits {
            memory_bytes: 1 << 28,
            max_pids: 128,
            cpu_millis: None,
            max_open_files: 1024,
            max_file_bytes: None,
            tmp_size_bytes: 1 << 26,
        };
        let py = &s.templates(&defaults).unwrap()["py"];
        assert_eq!((py.limits.memory_bytes, py.limits.max_pids), (1 << 30, 128));
        assert_eq!((py.env["A"].as_str(), py.workdir.as_str()), ("1", "/workspace"));
        let e = settings("[server.opensandbox.images]\n\"python\" = \"nope\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("server.opensandbox.images.python"), "{e}");
        let e = settings("[server.templates.t]\nworkdir = \"rel\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("server.templates.t.workdir"), "{e}");
    }

    #[test]
    fn bad_values_name_their_source() {
        let e = settings("[server]\naddress = \"localhost:1\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("server.address"), "{e}");
        let e = settings("", &[("AIRLOCK_MAX_SANDBOXES", "many")]).unwrap_err();
        assert!(e.to_string().contains("AIRLOCK_MAX_SANDBOXES"), "{e}");
        let e = settings("[server.max_limits]\nmemory_bytes = \"1K\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("server.max_limits.memory_bytes"), "{e}");
        assert!(settings("[server]\nbogus = 1\n", &[]).is_err());
    }

    #[test]
    fn zero_ttls_mean_none() {
        let s = settings("[server]\ndefault_ttl_seconds = 0\nmax_ttl_seconds = 0\n", &[]).unwrap();
        assert_eq!((s.default_ttl_seconds, s.max_ttl_seconds), (None, None));
    }
}
