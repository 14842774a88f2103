//! Channel plugin instances kept warm between webhook parses. Instantiating a component and
//! resetting its memory afterwards cost more than a parse itself (measured: about 10% of the
//! server's CPU under webhook load), so a parse runs on an instance an earlier parse left, when
//! one is idle. A parse carries no end user (no user-scoped kv) and sees every webhook of its
//! channel anyway, so reuse widens no plugin's view. Each call still gets its own deadline,
//! computing budget, fuel and counters; an instance that failed (trap, timeout, memory limit), grew
//! its memory beyond [`WARM_MEMORY_BYTES`], kept a host resource open or served [`WARM_CALLS`]
//! parses is dropped instead of kept.

use std::sync::Mutex;

use wasmtime::Store;

use crate::bindings::channel::ChannelPlugin;
use crate::state::PluginState;

/// The most idle instances kept per channel plugin: parses run inline on the server's async
/// workers, so this many can run at once on a machine of up to this many cores.
pub(crate) const WARM_INSTANCES: usize = 8;

/// Parses one instance serves before it is replaced by a fresh one (bounds whatever a plugin
/// lets accumulate: allocator fragmentation, resources it never dropped).
pub(crate) const WARM_CALLS: u32 = 10_000;

/// An instance whose linear memory grew beyond this is not kept: the pooling allocator keeps
/// this much resident per slot (see `PluginHost::new`).
pub(crate) const WARM_MEMORY_BYTES: usize = 8 * 1024 * 1024;

/// A channel instance ready for another parse.
pub(crate) struct WarmChannel {
    pub(crate) store: Store<PluginState>,
    pub(crate) bindings: ChannelPlugin,
    /// Parses it has served.
    pub(crate) calls: u32,
}

impl WarmChannel {
    /// Whether the instance may serve another parse: not worn out, not grown, and holding no
    /// host resource (a stream or pollable) the call left behind.
    fn reusable(&self) -> bool {
        let state = self.store.data();
        self.calls < WARM_CALLS && state.meter.peak <= WARM_MEMORY_BYTES && state.table.is_empty()
    }
}

/// The idle instances of one channel plugin.
#[derive(Default)]
pub(crate) struct WarmChannels(Mutex<Vec<WarmChannel>>);

impl WarmChannels {
    /// An idle instance, if there is one.
    pub(crate) fn take(&self) -> Option<WarmChannel> {
        self.0.lock().ok()?.pop()
    }

    /// Keeps `instance` (after a call that returned normally) for the next parse, unless it is
    /// worn out or enough are idle already.
    pub(crate) fn keep(&self, mut instance: WarmChannel) {
        instance.calls += 1;
        if !instance.reusable() {
            return;
        }
        if let Ok(mut idle) = self.0.lock()
            && idle.len() < WARM_INSTANCES
        {
            idle.push(instance);
        }
    }

    /// How many instances are idle.
    pub(crate) fn idle(&self) -> usize {
        self.0.lock().map_or(0, |idle| idle.len())
    }
}
