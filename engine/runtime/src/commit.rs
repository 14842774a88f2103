//! Group commit: writers hand their atomic changes to one committer task, which applies
//! everything that arrived while it was busy in a single store transaction, flushes once, and
//! answers everyone. Idle, a request is applied and flushed at once (no added latency); busy,
//! one transaction and one fsync serve a whole batch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use influxify_store::{Applied, Store, StoreError, Write};
use tokio::sync::{mpsc, oneshot};

/// What failed inside the committer: applying a group (nothing written), or flushing it.
enum Failure {
    Apply(StoreError),
    Flush(StoreError),
}

struct Request {
    writes: Vec<Write>,
    reply: oneshot::Sender<Result<Vec<Applied>, String>>,
}

/// The handle to the committer task.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    requests: mpsc::UnboundedSender<Request>,
    /// Set once a flush failed, with why.
    broken: Arc<Mutex<Option<String>>>,
    flushes: Arc<AtomicU64>,
    flush_micros: Arc<AtomicU64>,
    /// Set while a flush asked for by [`GroupCommit::flush_soon`] has not begun.
    flush_requested: Arc<AtomicBool>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Request({} writes)", self.writes.len())
    }
}

impl GroupCommit {
    /// Starts the committer. With `batching` off, every request gets its own transaction and
    /// flush (for measuring what group commit buys).
    pub fn start(store: Arc<dyn Store>, batching: bool) -> Self {
        let (requests, mut incoming) = mpsc::unbounded_channel::<Request>();
        let flushes = Arc::new(AtomicU64::new(0));
        let flush_micros = Arc::new(AtomicU64::new(0));
        let (count, busy) = (flushes.clone(), flush_micros.clone());
        let shared_broken = Arc::new(Mutex::new(None));
        let broken_slot = shared_broken.clone();
        let flush_requested = Arc::new(AtomicBool::new(false));
        let requested = flush_requested.clone();
        tokio::spawn(async move {
            // Set when a flush failed: from then on every request fails.
            let mut broken: Option<String> = None;
            while let Some(first) = incoming.recv().await {
                let mut batch = vec![first];
                if batching {
                    while let Ok(more) = incoming.try_recv() {
                        batch.push(more);
                    }
                }
                // This group's flush covers every change made before it begins.
                requested.store(false, Ordering::Release);
                let sizes: Vec<usize> = batch.iter().map(|r| r.writes.len()).collect();
                let writes: Vec<Write> = batch
                    .iter_mut()
                    .flat_map(|r| std::mem::take(&mut r.writes))
                    .collect();
                if let Some(why) = &broken {
                    for request in batch {
                        let _ = request.reply.send(Err(why.clone()));
                    }
                    continue;
                }
                let store = store.clone();
                let began = std::time::Instant::now();
                let result = tokio::task::spawn_blocking(move || {
                    let applied = if writes.is_empty() {
                        Vec::new()
                    } else {
                        store.apply(&writes).map_err(Failure::Apply)?
                    };
                    if let Err(err) = store.flush() {
                        // The group is visible but may not be on disk: nothing may act on it, and
                        // nothing written after it may be acknowledged. Only a restart (which
                        // recovers from what is on disk) can continue.
                        return Err(Failure::Flush(err));
                    }
                    Ok(applied)
                })
                .await
                .map_err(|err| err.to_string())
                .and_then(|r| {
                    r.map_err(|failure| match failure {
                        Failure::Apply(err) => err.to_string(),
                        Failure::Flush(err) => {
                            let why =
                                format!("the store could not flush ({err}); restart the process");
                            tracing::error!("{why}");
                            broken = Some(why.clone());
                            if let Ok(mut slot) = broken_slot.lock() {
                                *slot = Some(why.clone());
                            }
                            why
                        }
                    })
                });
                count.fetch_add(1, Ordering::Relaxed);
                busy.fetch_add(
                    u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                match result {
                    Ok(applied) => {
                        let mut applied = applied.into_iter();
                        for (request, size) in batch.into_iter().zip(sizes) {
                            let _ = request
                                .reply
                                .send(Ok(applied.by_ref().take(size).collect()));
                        }
                    }
                    Err(message) => {
                        for request in batch {
                            let _ = request.reply.send(Err(message.clone()));
                        }
                    }
                }
            }
        });
        GroupCommit {
            requests,
            broken: shared_broken,
            flushes,
            flush_micros,
            flush_requested,
        }
    }

    /// Makes every change made before the call durable with the next group's flush, without
    /// waiting for it: idle, a flush runs at once; busy, the group in progress or the next one
    /// covers it, and many calls meanwhile ask for one flush. A completed send's removal from
    /// the outbox is made durable this way, so that a crash repeats only the sends of the last
    /// few milliseconds, not every send since an unrelated flush.
    pub fn flush_soon(&self) {
        if !self.flush_requested.swap(true, Ordering::AcqRel) {
            let (reply, _) = oneshot::channel();
            let _ = self.requests.send(Request {
                writes: Vec::new(),
                reply,
            });
        }
    }

    /// Applies `writes` atomically and returns once they (and every write made before the
    /// call) are durable.
    pub async fn apply(&self, writes: Vec<Write>) -> Result<Vec<Applied>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request { writes, reply })
            .map_err(|_| StoreError::Backend("the committer has stopped".into()))?;
        match answer.await {
            Ok(Ok(applied)) => Ok(applied),
            Ok(Err(message)) => Err(StoreError::Backend(message)),
            Err(_) => Err(StoreError::Backend("the committer has stopped".into())),
        }
    }

    /// Returns once every write made before the call is durable.
    pub async fn durable(&self) -> Result<(), StoreError> {
        self.apply(Vec::new()).await.map(|_| ())
    }

    /// Why the committer stopped accepting writes, once a flush failed: what the store holds
    /// may then not be on disk, so nothing may act on it until a restart.
    pub fn broken(&self) -> Option<String> {
        self.broken.lock().ok().and_then(|why| why.clone())
    }

    /// Time spent applying and flushing so far, in microseconds.
    pub fn flush_micros(&self) -> u64 {
        self.flush_micros.load(Ordering::Relaxed)
    }

    /// How many flushes ran so far.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }
}
