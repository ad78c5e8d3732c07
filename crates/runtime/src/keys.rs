//! API keys: a random secret shown once at creation, stored only as its SHA-256. The key's id
//! owns the sandboxes made with it.

use sha2::{Digest, Sha256};

use crate::error::RuntimeError;
use crate::model::now_ms;
use crate::store::{Store, StoredKey};

/// Prefix of every secret, so a leaked one is easy to recognise and scan for.
pub const SECRET_PREFIX: &str = "ak_";

/// A key just created: the only time its secret is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedKey {
    /// The stored part.
    pub key: StoredKey,
    /// The secret to give to the client.
    pub secret: String,
}

/// The hex SHA-256 of a secret, as stored.
pub fn hash_secret(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The token that opens one sandbox, and nothing else, to whoever holds it: the hex SHA-256
/// of the server's token secret and the sandbox id. Front doors hand it out with a sandbox's
/// endpoints so that clients reach the sandbox without sending their API key along.
pub fn sandbox_token(secret: &str, sandbox_id: &str) -> String {
    hash_secret(&format!("{secret}\n{sandbox_id}"))
}

/// Create a key named `name` in `store`.
pub fn create(store: &Store, name: &str) -> Result<CreatedKey, RuntimeError> {
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(RuntimeError::Invalid {
            field: "name".to_owned(),
            reason: "must be 1 to 100 printable characters".to_owned(),
        });
    }
    // Two v4 UUIDs: 244 random bits from the operating system's generator.
    let secret = format!("{SECRET_PREFIX}{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let id = format!("key_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let key = StoredKey { id, name: name.to_owned(), created_ms: now_ms() };
    store.add_key(&key, &hash_secret(&secret))?;
    Ok(CreatedKey { key, secret })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_key_is_found_by_its_secret_only() {
        let dir = std::env::temp_dir().join(format!("airlock-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("db")).unwrap();
        let created = create(&store, "ci").unwrap();
        assert!(created.secret.starts_with(SECRET_PREFIX) && created.secret.len() == 67);
        assert_eq!(store.key_by_hash(&hash_secret(&created.secret)).unwrap(), Some(created.key.clone()));
        assert_eq!(store.key_by_hash(&hash_secret("ak_guess")).unwrap(), None);
        assert!(create(&store, "").is_err());
        assert!(store.remove_key(&created.key.id).unwrap());
        assert_eq!(store.key_by_hash(&hash_secret(&created.secret)).unwrap(), None);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn sandbox_tokens_differ_per_sandbox_and_secret_and_the_secret_is_kept() {
        let dir = std::env::temp_dir().join(format!("airlock-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("db")).unwrap();
        let secret = store.secret("sandbox_tokens").unwrap();
        assert_eq!(secret.len(), 64);
        assert_eq!(store.secret("sandbox_tokens").unwrap(), secret, "kept, not made again");
        assert_ne!(store.secret("other").unwrap(), secret);
        let a = sandbox_token(&secret, "sbx_a");
        assert_ne!(a, sandbox_token(&secret, "sbx_b"));
        assert_ne!(a, sandbox_token("another secret", "sbx_a"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
