//! Sleeping through WASI, bounded: a plugin's `wasi:clocks/monotonic-clock` subscriptions wake at
//! the call's deadline at the latest. Epoch interruption cannot stop a host call, so without this
//! a plugin could block its thread (and its pool slot) for as long as it liked.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::HostMonotonicClock;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

use crate::state::PluginState;

/// The WASI clocks package wasmtime-wasi links.
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// The monotonic clock plugins see: nanoseconds since their store was made.
#[derive(Debug, Clone, Copy)]
pub struct CallClock {
    /// When the call's store was made.
    pub start: Instant,
}

impl HostMonotonicClock for CallClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A sleep that ends at `until`.
struct Sleep(tokio::time::Instant);

impl Pollable for Sleep {
    fn ready<'life0, 'async_trait>(
        &'life0 mut self,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let until = self.0;
        Box::pin(async move { tokio::time::sleep_until(until).await })
    }
}

fn sleep_until(
    mut store: StoreContextMut<'_, PluginState>,
    wanted: Instant,
) -> wasmtime::Result<(Resource<DynPollable>,)> {
    let state = store.data_mut();
    let until = wanted.min(state.deadline);
    let sleep = state
        .table
        .push(Sleep(tokio::time::Instant::from_std(until)))?;
    Ok((subscribe(&mut state.table, sleep)?,))
}

/// Replaces WASI's monotonic-clock subscriptions in `linker` with ones bounded by the call's
/// deadline.
pub fn bound_sleeps(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    clock.func_wrap(
        "subscribe-duration",
        |store: StoreContextMut<'_, PluginState>, (nanos,): (u64,)| {
            let wanted = Instant::now()
                .checked_add(Duration::from_nanos(nanos))
                .unwrap_or(store.data().deadline);
            sleep_until(store, wanted)
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |store: StoreContextMut<'_, PluginState>, (when,): (u64,)| {
            let start = store.data().clock.start;
            let wanted = start
                .checked_add(Duration::from_nanos(when))
                .unwrap_or(store.data().deadline);
            sleep_until(store, wanted)
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
