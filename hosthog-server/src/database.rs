//! Finding the database and connecting to it.

use std::path::Path;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

/// Where server.toml lives unless `--config` says otherwise.
pub const DEFAULT_CONFIG: &str = "/etc/hosthog/server.toml";
/// The environment variable that names the database.
pub const DATABASE_ENV: &str = "HOSTHOG_DATABASE_URL";
/// Connections in the pool, whatever the number of hosts.
pub const POOL_SIZE: usize = 16;
/// How long a request waits for a free connection of the pool before it
/// is answered 503 (the pool is busy, or the database is down).
pub const WAIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long making a new connection, or checking a pooled one, may take.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why the database cannot be used.
#[derive(Debug)]
pub struct DatabaseError(pub String);

impl std::fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DatabaseError {}

/// /etc/hosthog/server.toml.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Where `serve` listens (default 0.0.0.0:8443).
    pub listen: Option<std::net::SocketAddr>,
    /// The CA directory (default /etc/hosthog/ca).
    pub ca_dir: Option<std::path::PathBuf>,
    pub database: Option<DatabaseSection>,
    /// The booking limits, per host (`[limits]`).
    #[serde(default)]
    pub limits: LimitsSection,
}

/// `[limits]` of server.toml: as hosthog.toml's, applied on every host of
/// a booking. Durations as people write them (`7d`, `12h`); `"unlimited"`
/// lifts a limit.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub max_duration: Option<String>,
    pub max_ahead: Option<String>,
    pub max_open_per_user: Option<u32>,
    pub max_exclusive: Option<String>,
}

impl LimitsSection {
    /// The limits, with hosthog.toml's defaults for those not set: 7 days
    /// long at most, starting at most 90 days ahead, 20 open reservations
    /// per user and host, 7 days of exclusive time per user and host.
    ///
    /// # Errors
    /// A duration that does not parse (the message names the key).
    pub fn limits(&self) -> Result<hosthog_booking::policy::Limits, DatabaseError> {
        let span = |key: &str, value: &Option<String>, default: i64| match value.as_deref() {
            None => Ok(Some(default)),
            Some("unlimited") => Ok(None),
            Some(text) => hosthog_booking::parse_duration(text)
                .map(Some)
                .map_err(|e| DatabaseError(format!("[limits] {key} = {text:?}: {e}"))),
        };
        Ok(hosthog_booking::policy::Limits {
            max_duration: span("max_duration", &self.max_duration, 7 * 86_400)?,
            max_ahead: span("max_ahead", &self.max_ahead, 90 * 86_400)?,
            max_open_per_user: match self.max_open_per_user {
                None => Some(20),
                Some(0) => None,
                Some(n) => Some(n as usize),
            },
            max_exclusive: span("max_exclusive", &self.max_exclusive, 7 * 86_400)?,
        })
    }
}

/// `[database]` of server.toml.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    pub url: String,
}

/// Reads server.toml; a missing file is the defaults.
///
/// # Errors
/// The file is unreadable or not valid (the message names the file).
pub fn load_config(path: &Path) -> Result<ServerConfig, DatabaseError> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text)
            .map_err(|e| DatabaseError(format!("{}: {}", path.display(), e.message()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ServerConfig::default()),
        Err(e) => Err(DatabaseError(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// The database URL: `flag` (`--database` or `HOSTHOG_DATABASE_URL`), else
/// `[database] url` of the configuration file at `config_path`.
///
/// # Errors
/// Nothing names a database.
pub fn url(
    flag: Option<&str>,
    config: &ServerConfig,
    config_path: &Path,
) -> Result<String, DatabaseError> {
    if let Some(url) = flag.filter(|u| !u.is_empty()) {
        return Ok(url.to_string());
    }
    config
        .database
        .as_ref()
        .map(|d| d.url.clone())
        .ok_or_else(|| {
            DatabaseError(format!(
                "no database given: pass --database URL, set {DATABASE_ENV}, or set url under \
             [database] in {}",
                config_path.display()
            ))
        })
}

/// `e` and what caused it, down the chain ("error connecting to server:
/// No such file or directory"), each said once.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let said = c.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = c.source();
    }
    text
}

/// A pool of connections to one database.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    config: tokio_postgres::Config,
}

impl Database {
    /// A pool for `url`: a libpq-style connection string or URL, unix
    /// sockets included (`host=/run/postgresql dbname=hosthog` or
    /// `postgresql:///hosthog?host=/run/postgresql`). Connects lazily.
    ///
    /// # Errors
    /// `url` cannot be read as a connection string.
    pub fn new(url: &str) -> Result<Database, DatabaseError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| DatabaseError(format!("the database URL cannot be read: {e}")))?;
        let manager = Manager::from_config(
            config.clone(),
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            // Without a runtime the timeouts below would not be kept.
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(WAIT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| DatabaseError(format!("cannot make the connection pool: {e}")))?;
        Ok(Database { pool, config })
    }

    /// The database as messages name it: `dbname on host` (a socket
    /// directory or a host name).
    pub fn name(&self) -> String {
        let dbname = self.config.get_dbname().unwrap_or("(default)");
        let host = match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "the default socket".to_string(),
        };
        format!("{dbname} on {host}")
    }

    /// How to connect, for a connection of its own (LISTEN).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// A connection from the pool.
    ///
    /// # Errors
    /// The database cannot be reached.
    pub async fn connection(&self) -> Result<deadpool_postgres::Object, DatabaseError> {
        self.pool.get().await.map_err(|e| {
            // deadpool's error does not chain to PostgreSQL's.
            let why = match &e {
                deadpool_postgres::PoolError::Backend(e) => with_causes(e),
                e => with_causes(e),
            };
            DatabaseError(format!("cannot reach the database {}: {why}", self.name()))
        })
    }
}
