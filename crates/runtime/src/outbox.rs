//! A durable outbox in the store: JSON payloads waiting to be delivered to a URL, each under a
//! key the receiver can use to drop duplicates. A sender writes a payload before its first
//! delivery attempt and removes it only once the receiver acknowledged it, so neither a receiver
//! that is down nor a restart of the server loses one. Delivering is the sender's job; this only
//! keeps the payloads. Several senders share the table, each under its own topic.

use rusqlite::{params, OptionalExtension, Row};
use serde_json::Value;

use crate::error::RuntimeError;
use crate::model::now_ms;
use crate::store::Store;

/// Made on first use, so that a database from a server that never had an outbox gets one.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    topic TEXT NOT NULL,
    key TEXT NOT NULL,
    url TEXT,
    payload TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    PRIMARY KEY (topic, key)
);";

const COLUMNS: &str = "topic, key, url, payload, created_ms, attempts, last_error";

/// One payload waiting for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    /// The sender that put it there and delivers it, e.g. `executor.result`.
    pub topic: String,
    /// Unique within the topic; sent along so that the receiver can drop duplicates.
    pub key: String,
    /// Where it goes; none while no destination is configured.
    pub url: Option<String>,
    /// What to deliver.
    pub payload: Value,
    /// When it was put, in milliseconds since the epoch.
    pub created_ms: i64,
    /// Failed delivery attempts so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

impl Store {
    fn outbox_table(&self) -> Result<(), RuntimeError> {
        self.db.execute_batch(SCHEMA)?;
        Ok(())
    }

    /// Keep `payload` for delivery to `url` under (`topic`, `key`), replacing what was there.
    pub fn outbox_put(
        &self,
        topic: &str,
        key: &str,
        url: Option<&str>,
        payload: &Value,
    ) -> Result<(), RuntimeError> {
        self.outbox_table()?;
        self.db.execute(
            "INSERT OR REPLACE INTO outbox (topic, key, url, payload, created_ms, attempts, last_error)
             VALUES (?1, ?2, ?3, ?4, ?5, 0, NULL)",
            params![topic, key, url, payload.to_string(), now_ms()],
        )?;
        Ok(())
    }

    /// The payloads of `topic` not yet acknowledged, oldest first. A payload that no longer
    /// parses is skipped with a warning.
    pub fn outbox_pending(&self, topic: &str) -> Result<Vec<OutboxItem>, RuntimeError> {
        self.outbox_table()?;
        let mut query = self
            .db
            .prepare(&format!("SELECT {COLUMNS} FROM outbox WHERE topic = ?1 ORDER BY created_ms, key"))?;
        let rows = query.query_map(params![topic], read_row)?;
        let mut items = Vec::new();
        for row in rows {
            match row? {
                Ok(item) => items.push(item),
                Err(key) => tracing::warn!(topic, key, "skipping an outbox payload that is not JSON"),
            }
        }
        Ok(items)
    }

    /// The payload under (`topic`, `key`), if it waits.
    pub fn outbox_get(&self, topic: &str, key: &str) -> Result<Option<OutboxItem>, RuntimeError> {
        self.outbox_table()?;
        let row = self
            .db
            .query_row(
                &format!("SELECT {COLUMNS} FROM outbox WHERE topic = ?1 AND key = ?2"),
                params![topic, key],
                read_row,
            )
            .optional()?;
        Ok(row.and_then(Result::ok))
    }

    /// Note a failed delivery attempt and why.
    pub fn outbox_failed(&self, topic: &str, key: &str, error: &str) -> Result<(), RuntimeError> {
        self.outbox_table()?;
        self.db.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?3 WHERE topic = ?1 AND key = ?2",
            params![topic, key, error],
        )?;
        Ok(())
    }

    /// Forget a payload: acknowledged, or refused for good. Returns whether it was there.
    pub fn outbox_remove(&self, topic: &str, key: &str) -> Result<bool, RuntimeError> {
        self.outbox_table()?;
        let removed =
            self.db.execute("DELETE FROM outbox WHERE topic = ?1 AND key = ?2", params![topic, key])?;
        Ok(removed > 0)
    }

    /// How many payloads of `topic` wait.
    pub fn outbox_len(&self, topic: &str) -> Result<u64, RuntimeError> {
        self.outbox_table()?;
        let count: i64 =
            self.db.query_row("SELECT COUNT(*) FROM outbox WHERE topic = ?1", params![topic], |row| {
                row.get(0)
            })?;
        Ok(count.max(0) as u64)
    }
}

/// A row as an item, or its key when the payload does not parse.
fn read_row(row: &Row<'_>) -> rusqlite::Result<Result<OutboxItem, String>> {
    let key: String = row.get(1)?;
    let payload: String = row.get(3)?;
    let Ok(payload) = serde_json::from_str(&payload) else { return Ok(Err(key)) };
    Ok(Ok(OutboxItem {
        topic: row.get(0)?,
        key,
        url: row.get(2)?,
        payload,
        created_ms: row.get(4)?,
        attempts: row.get(5)?,
        last_error: row.get(6)?,
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn store() -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("airlock-outbox-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        (Store::open(&dir.join("store.db")).unwrap(), dir)
    }

    #[test]
    fn a_payload_waits_until_removed_and_survives_reopening() {
        let (store, dir) = store();
        store.outbox_put("t", "k1", Some("http://cp/result"), &json!({"n": 1})).unwrap();
        store.outbox_put("t", "k2", None, &json!({"n": 2})).unwrap();
        store.outbox_put("other", "k1", None, &json!({"n": 3})).unwrap();
        assert_eq!(store.outbox_len("t").unwrap(), 2);
        drop(store);

        let store = Store::open(&dir.join("store.db")).unwrap();
        let pending = store.outbox_pending("t").unwrap();
        let keys: Vec<&str> = pending.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys.len(), 2);
        assert!(keys.contains(&"k1") && keys.contains(&"k2"), "{keys:?}");
        let first = store.outbox_get("t", "k1").unwrap().unwrap();
        assert_eq!(first.url.as_deref(), Some("http://cp/result"));
        assert_eq!(first.payload, json!({"n": 1}));
        assert_eq!(first.attempts, 0);

        assert!(store.outbox_remove("t", "k1").unwrap());
        assert!(!store.outbox_remove("t", "k1").unwrap());
        assert_eq!(store.outbox_get("t", "k1").unwrap(), None);
        assert_eq!(store.outbox_len("t").unwrap(), 1);
        assert_eq!(store.outbox_len("other").unwrap(), 1, "topics are apart");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn failed_attempts_are_counted_and_a_new_put_starts_afresh() {
        let (store, dir) = store();
        store.outbox_put("t", "k", Some("http://a/"), &json!(1)).unwrap();
        store.outbox_failed("t", "k", "connection refused").unwrap();
        store.outbox_failed("t", "k", "503").unwrap();
        let item = store.outbox_get("t", "k").unwrap().unwrap();
        assert_eq!((item.attempts, item.last_error.as_deref()), (2, Some("503")));

        store.outbox_put("t", "k", Some("http://b/"), &json!(2)).unwrap();
        let item = store.outbox_get("t", "k").unwrap().unwrap();
        assert_eq!((item.attempts, item.url.as_deref(), item.payload), (0, Some("http://b/"), json!(2)));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_unreadable_payload_is_skipped_not_fatal() {
        let (store, dir) = store();
        store.outbox_put("t", "good", None, &json!({})).unwrap();
        store
            .db
            .execute("INSERT INTO outbox (topic, key, payload, created_ms) VALUES ('t', 'bad', '{', 0)", [])
            .unwrap();
        let pending = store.outbox_pending("t").unwrap();
        assert_eq!(pending.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(), ["good"]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
