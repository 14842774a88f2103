//! Secrets at rest: API keys, OAuth tokens and service-account keys sealed with
//! ChaCha20-Poly1305 (ring's AEAD) in the store's `secrets` tree, each bound to its name. The
//! master key comes from `INFLUXIFY_MASTER_KEY` (64 hex digits) or a key file that must not lie
//! in the data directory; a file is created (readable by its owner only) on first start when
//! neither is given. `INFLUXIFY_SECRET_<NAME>` variables override stored secrets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use influxify_plugin_host::{MemorySecrets, Secret, SecretError, SecretStore};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// The environment variable holding the master key.
pub const MASTER_KEY_VAR: &str = "INFLUXIFY_MASTER_KEY";
/// The entry that proves the master key is the one the secrets were sealed with.
const CHECK: &str = "\u{0}check";

/// Why secrets cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The master key is malformed.
    #[error("the master key must be 64 hex digits (32 bytes): {0}")]
    BadKey(String),
    /// The key file is in the data directory.
    #[error(
        "the master key file {0} is inside the data directory; keep it elsewhere (a backup of the data must not carry its key)"
    )]
    KeyBesideData(String),
    /// The key file could not be read or created.
    #[error("master key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The stored secrets were sealed with another key.
    #[error(
        "the master key does not open the stored secrets: they were sealed with another key (set {MASTER_KEY_VAR} or the key file to the original key)"
    )]
    WrongKey,
    /// The store failed.
    #[error("the secret store failed: {0}")]
    Store(String),
    /// No randomness.
    #[error("the system random generator failed")]
    Random,
}

/// The 32-byte key that seals secrets.
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A key from 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, SealError> {
        let text = text.trim();
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SealError::BadKey(format!(
                "got {} characters{}",
                text.len(),
                if text.bytes().all(|b| b.is_ascii_hexdigit()) {
                    ""
                } else {
                    ", not all hex digits"
                }
            )));
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|err| SealError::BadKey(err.to_string()))?;
        }
        Ok(MasterKey(key))
    }

    /// A fresh random key.
    pub fn generate() -> Result<Self, SealError> {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| SealError::Random)?;
        Ok(MasterKey(key))
    }

    /// The key as 64 hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The key from `env` (if set), else from `file` (created when missing), else from the
    /// default file `default_file`. A file inside `data` is refused.
    pub fn locate(
        env: Option<String>,
        file: Option<&Path>,
        default_file: &Path,
        data: &Path,
    ) -> Result<(Self, KeySource), SealError> {
        if let Some(hex) = env {
            return Ok((MasterKey::from_hex(&hex)?, KeySource::Environment));
        }
        let path = file.unwrap_or(default_file);
        if inside(path, data) {
            return Err(SealError::KeyBesideData(path.display().to_string()));
        }
        let io = |source| SealError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((
                MasterKey::from_hex(&text)?,
                KeySource::File(path.to_path_buf()),
            )),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let key = MasterKey::generate()?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                crate::files::write_private(path, format!("{}\n", key.to_hex()).as_bytes())
                    .map_err(io)?;
                Ok((key, KeySource::Created(path.to_path_buf())))
            }
            Err(err) => Err(io(err)),
        }
    }
}

/// Where the master key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `INFLUXIFY_MASTER_KEY`.
    Environment,
    /// An existing key file.
    File(PathBuf),
    /// A key file created now.
    Created(PathBuf),
}

/// Whether `path` lies inside `dir` (both made absolute as far as they exist).
fn inside(path: &Path, dir: &Path) -> bool {
    let absolute = |p: &Path| {
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        };
        // Canonicalize what exists: the file may not exist yet, its directory may.
        match (p.parent(), p.file_name()) {
            (Some(parent), Some(name)) => parent
                .canonicalize()
                .map(|c| c.join(name))
                .unwrap_or(p.clone()),
            _ => p,
        }
    };
    let dir = dir.canonicalize().unwrap_or_else(|_| absolute(dir));
    absolute(path).starts_with(dir)
}

/// Where each secret comes from, for listings (values are never shown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SecretOrigin {
    /// Stored, sealed, in the data directory.
    Stored,
    /// An `INFLUXIFY_SECRET_<NAME>` variable.
    Environment,
}

/// Secrets sealed in the store, with environment overrides.
pub struct SealedSecrets {
    tree: sled::Tree,
    key: LessSafeKey,
    env: MemorySecrets,
    env_names: Vec<String>,
}

impl std::fmt::Debug for SealedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSecrets").finish_non_exhaustive()
    }
}

impl SealedSecrets {
    /// Opens the `secrets` tree of `db` with `master`; `env` holds the overrides (their names
    /// in `env_names`). A master key that does not open what is stored is refused.
    pub fn open(
        db: &sled::Db,
        master: &MasterKey,
        env: MemorySecrets,
        env_names: Vec<String>,
    ) -> Result<Self, SealError> {
        let tree = db
            .open_tree("secrets")
            .map_err(|err| SealError::Store(err.to_string()))?;
        let key = LessSafeKey::new(
            UnboundKey::new(&CHACHA20_POLY1305, &master.0).map_err(|_| SealError::Random)?,
        );
        let sealed = SealedSecrets {
            tree,
            key,
            env,
            env_names,
        };
        match sealed
            .tree
            .get(CHECK)
            .map_err(|err| SealError::Store(err.to_string()))?
        {
            Some(check) => {
                sealed
                    .open_value(CHECK, &check)
                    .map_err(|_| SealError::WrongKey)?;
            }
            None => {
                let check = sealed
                    .seal(CHECK, b"influxify")
                    .map_err(|_| SealError::Random)?;
                sealed
                    .tree
                    .insert(CHECK, check)
                    .map_err(|err| SealError::Store(err.to_string()))?;
            }
        }
        Ok(sealed)
    }

    fn seal(&self, name: &str, plain: &[u8]) -> Result<Vec<u8>, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SecretError::Backend("no randomness".into()))?;
        let mut sealed = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| SecretError::Backend("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn open_value(&self, name: &str, stored: &[u8]) -> Result<Vec<u8>, SecretError> {
        if stored.len() < NONCE_LEN {
            return Err(SecretError::Backend(format!("secret `{name}` is damaged")));
        }
        let (nonce, sealed) = stored.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| SecretError::Backend(format!("secret `{name}` is damaged")))?;
        let mut buffer = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut buffer)
            .map_err(|_| {
                SecretError::Backend(format!(
                    "secret `{name}` cannot be opened with this master key"
                ))
            })?;
        Ok(plain.to_vec())
    }

    /// The names of the secrets and where each comes from; never their values.
    pub fn names(&self) -> Result<BTreeMap<String, SecretOrigin>, SecretError> {
        let mut names = BTreeMap::new();
        for entry in self.tree.iter() {
            let (name, _) = entry.map_err(|err| SecretError::Backend(err.to_string()))?;
            let name = String::from_utf8_lossy(&name).into_owned();
            if name != CHECK {
                names.insert(name, SecretOrigin::Stored);
            }
        }
        for name in &self.env_names {
            names.insert(name.clone(), SecretOrigin::Environment);
        }
        Ok(names)
    }

    /// Stores `secret` as `name`, sealed, and flushes it.
    pub fn set(&self, name: &str, secret: &Secret) -> Result<(), SecretError> {
        let plain =
            serde_json::to_vec(secret).map_err(|err| SecretError::Backend(err.to_string()))?;
        let sealed = self.seal(name, &plain)?;
        self.tree
            .insert(name, sealed)
            .map_err(|err| SecretError::Backend(err.to_string()))?;
        self.tree
            .flush()
            .map_err(|err| SecretError::Backend(err.to_string()))?;
        Ok(())
    }

    /// Deletes the stored secret `name`; whether there was one.
    pub fn delete(&self, name: &str) -> Result<bool, SecretError> {
        let removed = self
            .tree
            .remove(name)
            .map_err(|err| SecretError::Backend(err.to_string()))?;
        self.tree
            .flush()
            .map_err(|err| SecretError::Backend(err.to_string()))?;
        Ok(removed.is_some())
    }
}

impl SecretStore for SealedSecrets {
    fn get(&self, name: &str) -> Result<Option<Secret>, SecretError> {
        if let Some(secret) = self.env.get(name)? {
            return Ok(Some(secret));
        }
        let Some(stored) = self
            .tree
            .get(name)
            .map_err(|err| SecretError::Backend(err.to_string()))?
        else {
            return Ok(None);
        };
        let plain = self.open_value(name, &stored)?;
        serde_json::from_slice(&plain)
            .map(Some)
            .map_err(|_| SecretError::Backend(format!("secret `{name}` is damaged")))
    }

    fn put(&self, name: &str, secret: Secret) -> Result<(), SecretError> {
        // A refreshed token of a secret given in the environment stays in memory.
        if self.env_names.iter().any(|n| n == name) {
            return self.env.put(name, secret);
        }
        self.set(name, &secret)
    }
}
