//! Finding the database and connecting to it.

use std::path::Path;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

/// Where server.toml lives unless `--config` says otherwise.
pub const DEFAULT_CONFIG: &str = "/etc/hosthog/server.toml";
/// The environment variable that names the database.
pub const DATABASE_ENV: &str = "HOSTHOG_DATABASE_URL";
/// Connections in the pool, whatever the number of hosts.
pub const POOL_SIZE: usize = 16;

/// Why the database cannot be used.
#[derive(Debug)]
pub struct DatabaseError(pub String);

impl std::fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DatabaseError {}

/// The `[database]` table of server.toml.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    database: Option<DatabaseSection>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DatabaseSection {
    url: String,
}

/// The database URL: `flag` (`--database`), else `env` (the value of
/// `HOSTHOG_DATABASE_URL`), else `url` under `[database]` in the
/// configuration file (which may be absent only when the others give one).
///
/// # Errors
/// Nothing names a database, or the configuration file is unreadable.
pub fn url(flag: Option<&str>, env: Option<&str>, config: &Path) -> Result<String, DatabaseError> {
    if let Some(url) = flag.or(env).filter(|u| !u.is_empty()) {
        return Ok(url.to_string());
    }
    let text = std::fs::read_to_string(config).map_err(|e| {
        DatabaseError(format!(
            "no database given: pass --database URL, set {DATABASE_ENV}, or set url under \
             [database] in {} ({e})",
            config.display()
        ))
    })?;
    let file: ConfigFile = toml::from_str(&text)
        .map_err(|e| DatabaseError(format!("{}: {}", config.display(), e.message())))?;
    file.database.map(|d| d.url).ok_or_else(|| {
        DatabaseError(format!(
            "{} has no [database] url; pass --database URL or set {DATABASE_ENV}",
            config.display()
        ))
    })
}

/// A pool of connections to one database.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
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
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| DatabaseError(format!("cannot make the connection pool: {e}")))?;
        Ok(Database { pool })
    }

    /// A connection from the pool.
    ///
    /// # Errors
    /// The database cannot be reached.
    pub async fn connection(&self) -> Result<deadpool_postgres::Object, DatabaseError> {
        self.pool
            .get()
            .await
            .map_err(|e| DatabaseError(format!("cannot reach the database: {e}")))
    }
}
