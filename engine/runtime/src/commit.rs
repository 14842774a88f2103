//! Group commit: callers that need durability wait for a flush; everyone who asked while a
//! flush was running shares the next one. Idle, a request flushes at once (no added latency);
//! busy, one fsync serves a whole batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use influxify_store::{Store, StoreError};
use tokio::sync::{mpsc, oneshot};

type Waiter = oneshot::Sender<Result<(), String>>;

/// The handle to the flusher task.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    requests: mpsc::UnboundedSender<Waiter>,
    flushes: Arc<AtomicU64>,
    flush_micros: Arc<AtomicU64>,
}

impl GroupCommit {
    /// Starts the flusher. With `batching` off, every request gets its own flush (for measuring
    /// what group commit buys).
    pub fn start(store: Arc<dyn Store>, batching: bool) -> Self {
        let (requests, mut incoming) = mpsc::unbounded_channel::<Waiter>();
        let flushes = Arc::new(AtomicU64::new(0));
        let counter = flushes.clone();
        let flush_micros = Arc::new(AtomicU64::new(0));
        let busy = flush_micros.clone();
        tokio::spawn(async move {
            while let Some(first) = incoming.recv().await {
                let mut waiters = vec![first];
                if batching {
                    while let Ok(more) = incoming.try_recv() {
                        waiters.push(more);
                    }
                }
                let store = store.clone();
                let began = std::time::Instant::now();
                let result = tokio::task::spawn_blocking(move || store.flush())
                    .await
                    .map_err(|err| err.to_string())
                    .and_then(|r| r.map_err(|err| err.to_string()));
                counter.fetch_add(1, Ordering::Relaxed);
                busy.fetch_add(
                    u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                for waiter in waiters {
                    let _ = waiter.send(result.clone());
                }
            }
        });
        GroupCommit {
            requests,
            flushes,
            flush_micros,
        }
    }

    /// Returns once every write made before the call is durable.
    pub async fn durable(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(tx)
            .map_err(|_| StoreError::Backend("the flusher has stopped".into()))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(StoreError::Backend(message)),
            Err(_) => Err(StoreError::Backend("the flusher has stopped".into())),
        }
    }

    /// Time spent flushing so far, in microseconds.
    pub fn flush_micros(&self) -> u64 {
        self.flush_micros.load(Ordering::Relaxed)
    }

    /// How many flushes ran so far.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }
}
