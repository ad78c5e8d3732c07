//! The SQLite store in the data directory: sandboxes, commands and API keys. Records are
//! written through on every change, so a restart (or a `kill -9`) loses none of them.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::RuntimeError;
use crate::model::{CommandRecord, CommandStatus, SandboxRecord};

/// One API key as stored: the secret itself is never kept, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Public id, the owner of the sandboxes made with the key.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// Creation time (ms since the epoch).
    pub created_ms: i64,
}

/// The database.
pub struct Store {
    pub(crate) db: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sandboxes (
    slot INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY,
    sandbox_id TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS commands_by_sandbox ON commands (sandbox_id, started_ms);
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL
);
";

impl Store {
    /// Open (or create) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, RuntimeError> {
        let db = Connection::open(path)?;
        // WAL with NORMAL sync survives a process kill without losing committed records, and
        // keeps each write to a few microseconds.
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        Ok(Store { db })
    }

    /// The server's secret named `name`, made (random) on first use and kept across restarts.
    pub fn secret(&self, name: &str) -> Result<String, RuntimeError> {
        let fresh = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        self.db
            .execute("INSERT OR IGNORE INTO secrets (name, value) VALUES (?1, ?2)", params![name, fresh])?;
        Ok(self.db.query_row("SELECT value FROM secrets WHERE name = ?1", params![name], |row| row.get(0))?)
    }

    /// Reserve a slot (the host uid number) for a new sandbox `id`; slots are never reused.
    pub fn reserve_slot(&self, id: &str) -> Result<u32, RuntimeError> {
        self.db.execute("INSERT INTO sandboxes (id, record) VALUES (?1, '')", params![id])?;
        Ok(self.db.last_insert_rowid() as u32)
    }

    /// Write a sandbox's record.
    pub fn save_sandbox(&self, record: &SandboxRecord) -> Result<(), RuntimeError> {
        let json =
            serde_json::to_string(record).map_err(|e| RuntimeError::io("encode a record", e.into()))?;
        self.db.execute("UPDATE sandboxes SET record = ?2 WHERE id = ?1", params![record.id, json])?;
        Ok(())
    }

    /// Every sandbox record, oldest first.
    pub fn sandboxes(&self) -> Result<Vec<SandboxRecord>, RuntimeError> {
        let mut query = self.db.prepare("SELECT record FROM sandboxes WHERE record != '' ORDER BY slot")?;
        let rows = query.query_map([], |row| row.get::<_, String>(0))?;
        let mut records = Vec::new();
        for row in rows {
            match serde_json::from_str(&row?) {
                Ok(record) => records.push(record),
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable sandbox record"),
            }
        }
        Ok(records)
    }

    /// Write a command's record.
    pub fn save_command(&self, record: &CommandRecord) -> Result<(), RuntimeError> {
        let json =
            serde_json::to_string(record).map_err(|e| RuntimeError::io("encode a record", e.into()))?;
        self.db.execute(
            "INSERT INTO commands (id, sandbox_id, started_ms, status, record) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (id) DO UPDATE SET status = ?4, record = ?5",
            params![record.id, record.sandbox_id, record.started_ms, record.status.as_str(), json],
        )?;
        Ok(())
    }

    /// The commands of a sandbox, oldest first.
    pub fn commands(&self, sandbox_id: &str) -> Result<Vec<CommandRecord>, RuntimeError> {
        let mut query =
            self.db.prepare("SELECT record FROM commands WHERE sandbox_id = ?1 ORDER BY started_ms, id")?;
        let rows = query.query_map(params![sandbox_id], |row| row.get::<_, String>(0))?;
        let mut records = Vec::new();
        for row in rows {
            if let Ok(record) = serde_json::from_str(&row?) {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// Mark every command that was running as lost (after a restart). Returns how many.
    pub fn lose_running_commands(&self, message: &str) -> Result<usize, RuntimeError> {
        let mut query = self.db.prepare("SELECT record FROM commands WHERE status = 'running'")?;
        let running: Vec<String> = query.query_map([], |row| row.get(0))?.collect::<Result<_, _>>()?;
        let mut lost = 0;
        for json in running {
            let Ok(mut record) = serde_json::from_str::<CommandRecord>(&json) else { continue };
            record.status = CommandStatus::Lost;
            record.error = Some(message.to_owned());
            self.save_command(&record)?;
            lost += 1;
        }
        Ok(lost)
    }

    /// Add an API key by the SHA-256 of its secret.
    pub fn add_key(&self, key: &StoredKey, secret_hash: &str) -> Result<(), RuntimeError> {
        self.db.execute(
            "INSERT INTO api_keys (id, name, hash, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![key.id, key.name, secret_hash, key.created_ms],
        )?;
        Ok(())
    }

    /// The key whose secret hashes to `secret_hash`.
    pub fn key_by_hash(&self, secret_hash: &str) -> Result<Option<StoredKey>, RuntimeError> {
        // Asked on every request: the statement is kept prepared.
        Ok(self
            .db
            .prepare_cached("SELECT id, name, created_ms FROM api_keys WHERE hash = ?1")?
            .query_row(params![secret_hash], |r| {
                Ok(StoredKey { id: r.get(0)?, name: r.get(1)?, created_ms: r.get(2)? })
            })
            .optional()?)
    }

    /// Whether any key exists.
    pub fn has_keys(&self) -> Result<bool, RuntimeError> {
        // Asked on every request while there are no keys: the statement is kept prepared.
        Ok(self.db.prepare_cached("SELECT EXISTS (SELECT 1 FROM api_keys)")?.query_row([], |r| r.get(0))?)
    }

    /// Every key, oldest first.
    pub fn keys(&self) -> Result<Vec<StoredKey>, RuntimeError> {
        let mut query =
            self.db.prepare("SELECT id, name, created_ms FROM api_keys ORDER BY created_ms, id")?;
        let rows = query
            .query_map([], |r| Ok(StoredKey { id: r.get(0)?, name: r.get(1)?, created_ms: r.get(2)? }))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Remove a key; returns whether it existed.
    pub fn remove_key(&self, id: &str) -> Result<bool, RuntimeError> {
        Ok(self.db.execute("DELETE FROM api_keys WHERE id = ?1", params![id])? > 0)
    }
}
