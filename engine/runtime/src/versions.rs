//! Flow versions: publishing stores an immutable, content-addressed version of a bot's flows;
//! conversations stay on the version they started with until a migration moves them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use influxify_core::{Catalog, Diagnostic, FlowSet, Source, compile};
use influxify_store::{FlowVersion, Store, StoreError};
use sha2::{Digest, Sha256};

/// What happens to live conversations on older versions when a version is published.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MigrationPolicy {
    /// They stay on their version (nobody is stranded: old versions are kept). The default, but
    /// it must be asked for explicitly when the new version removes nodes where conversations
    /// are waiting, so that the designer sees how many are concerned.
    #[default]
    Keep,
    /// They start again on the new version (variables reset, profile kept).
    Restart,
    /// They move to the new version, at the node the map gives for their node (nodes missing
    /// from the map keep their id, which must exist in the new version).
    Map(BTreeMap<String, String>),
}

/// Conversations waiting at a node that a new version no longer has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stranded {
    /// The version they are on.
    pub version: String,
    /// The flow.
    pub flow: String,
    /// The node that disappears.
    pub node: String,
    /// How many conversations wait there.
    pub conversations: usize,
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishReport {
    /// The new version's hash.
    pub version: String,
    /// Whether it was already the newest version (nothing changed).
    pub unchanged: bool,
    /// Conversations at nodes the new version removes (before the policy was applied).
    pub stranded: Vec<Stranded>,
    /// Conversations moved to the new version by the policy.
    pub migrated: usize,
}

/// Why a publish was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The flows do not compile.
    #[error("the flows do not compile:\n{}", .0.iter().filter(|d| d.is_error()).map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
    /// Live conversations wait at nodes the new version removes, and no policy was given.
    #[error("{} conversation(s) wait at nodes this version removes; publish again with a policy (keep, restart, or a node map)", .0.iter().map(|s| s.conversations).sum::<usize>())]
    WouldStrand(Vec<Stranded>),
    /// A node map leaves conversations at nodes the new version does not have.
    #[error("the node map leaves conversations at missing nodes: {}", .0.iter().map(|s| format!("{}:{}", s.flow, s.node)).collect::<Vec<_>>().join(", "))]
    IncompleteMap(Vec<Stranded>),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The versions of one bot, compiled on demand and cached.
#[derive(Debug)]
pub struct Registry {
    store: Arc<dyn Store>,
    bot: String,
    catalog: Option<Catalog>,
    compiled: Mutex<HashMap<String, Arc<FlowSet>>>,
}

/// The content hash of a set of flow sources: independent of their order.
pub fn content_hash(sources: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = sources.iter().collect();
    sorted.sort();
    let mut hasher = Sha256::new();
    for (name, text) in sorted {
        hasher.update((name.len() as u64).to_be_bytes());
        hasher.update(name.as_bytes());
        hasher.update((text.len() as u64).to_be_bytes());
        hasher.update(text.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Registry {
    /// The registry of `bot`'s versions in `store`.
    pub fn new(store: Arc<dyn Store>, bot: &str, catalog: Option<Catalog>) -> Self {
        Registry {
            store,
            bot: bot.to_string(),
            catalog,
            compiled: Mutex::new(HashMap::new()),
        }
    }

    /// The newest version's hash.
    pub fn head(&self) -> Result<Option<String>, StoreError> {
        self.store.head(&self.bot)
    }

    /// The compiled flows of version `hash`.
    pub fn flows(&self, hash: &str) -> Result<Arc<FlowSet>, StoreError> {
        if let Some(flows) = self.compiled.lock().ok().and_then(|c| c.get(hash).cloned()) {
            return Ok(flows);
        }
        let version = self
            .store
            .version(hash)?
            .ok_or_else(|| StoreError::Corrupt {
                what: format!("flow version {hash}"),
                error: "not stored".into(),
            })?;
        // Stored versions were validated against the catalog when published; a later catalog
        // (an upgrade) must not make the conversations pinned to them unusable.
        let flows = Arc::new(self.compile_with(&version.sources, None).map_err(|err| {
            StoreError::Corrupt {
                what: format!("flow version {hash}"),
                error: err.to_string(),
            }
        })?);
        if let Ok(mut cache) = self.compiled.lock() {
            cache.insert(hash.to_string(), flows.clone());
        }
        Ok(flows)
    }

    fn compile(&self, sources: &[(String, String)]) -> Result<FlowSet, PublishError> {
        self.compile_with(sources, self.catalog.as_ref())
    }

    fn compile_with(
        &self,
        sources: &[(String, String)],
        catalog: Option<&Catalog>,
    ) -> Result<FlowSet, PublishError> {
        let sources: Vec<Source> = sources
            .iter()
            .map(|(name, text)| Source::new(name.clone(), text.clone()))
            .collect();
        let compilation = compile(&sources, catalog);
        match compilation.flows {
            Some(flows) => Ok(flows),
            None => Err(PublishError::Invalid(compilation.diagnostics)),
        }
    }

    /// Conversations on other versions that wait at nodes `flows` does not have.
    pub fn stranded_by(&self, hash: &str, flows: &FlowSet) -> Result<Vec<Stranded>, StoreError> {
        let mut counts: BTreeMap<(String, String, String), usize> = BTreeMap::new();
        for version in self.store.versions()? {
            // Only this bot's conversations: a store may hold several bots.
            if version == hash
                || self
                    .store
                    .version(&version)?
                    .is_some_and(|v| v.bot != self.bot)
            {
                continue;
            }
            for (place, _) in self.store.placed(&version)? {
                let exists = flows
                    .get(&place.flow)
                    .is_some_and(|f| place.node.is_empty() || f.node_index(&place.node).is_some());
                if !exists {
                    *counts
                        .entry((version.clone(), place.flow, place.node))
                        .or_default() += 1;
                }
            }
        }
        Ok(counts
            .into_iter()
            .map(|((version, flow, node), conversations)| Stranded {
                version,
                flow,
                node,
                conversations,
            })
            .collect())
    }

    /// Compiles and stores a new version without making it the head yet; returns its hash, its
    /// flows and the conversations it would strand.
    pub fn prepare(
        &self,
        sources: Vec<(String, String)>,
    ) -> Result<(String, Arc<FlowSet>, Vec<Stranded>), PublishError> {
        let flows = Arc::new(self.compile(&sources)?);
        let hash = content_hash(&sources);
        let stranded = self.stranded_by(&hash, &flows)?;
        let version = FlowVersion {
            hash: hash.clone(),
            bot: self.bot.clone(),
            sources,
            published_at: crate::clock::now_ms(),
        };
        self.store.put_version(&version)?;
        if let Ok(mut cache) = self.compiled.lock() {
            cache.insert(hash.clone(), flows.clone());
        }
        Ok((hash, flows, stranded))
    }

    /// Makes `hash` the newest version.
    pub fn set_head(&self, hash: &str) -> Result<(), StoreError> {
        self.store.set_head(&self.bot, hash)
    }

    /// The bot's name.
    pub fn bot(&self) -> &str {
        &self.bot
    }
}
