//! Reading packs two at a time: the index cache hands out each pack with its blobs in one
//! sorted pass, worker threads read and check them, and the results come back to the calling
//! thread, which alone records them. Memory holds one pack per worker and the blob lists of
//! the few packs queued for them, whatever the repository's size.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};

use crate::error::{Error, Result};
use crate::repo::IndexedRepository;
use crate::repo::id::PackId;
use crate::repo::pack::PackedBlob;

/// Packs read at once. Two keep a local disk or a network link busy while the other thread
/// decrypts; more would hold more packs in memory for little gain on the two cores pgcairn
/// is measured on (restore, which also writes, uses one thread per core and one more).
pub const THREADS: usize = 2;

/// One indexed pack: its id, its size and the blobs the index places in it.
pub struct PackJob {
    pub id: PackId,
    pub size: u64,
    pub entries: Vec<PackedBlob>,
}

/// Runs `work` on every indexed pack that `wanted` accepts, [`THREADS`] at a time, and hands
/// each pack with its result to `done` on the calling thread, in the order they finish. Stops
/// handing out packs once `interrupted` is set. `done` runs while the index cache is locked:
/// it must only record.
pub fn for_each_pack<R: Send>(
    repo: &IndexedRepository,
    wanted: &dyn Fn(&PackId) -> bool,
    interrupted: &AtomicBool,
    work: &(dyn Fn(&PackJob) -> R + Sync),
    done: &mut dyn FnMut(PackJob, R),
) -> Result<()> {
    let (job_tx, job_rx) = mpsc::sync_channel::<PackJob>(THREADS);
    let job_rx = Mutex::new(job_rx);
    let (result_tx, result_rx) = mpsc::channel::<(PackJob, R)>();
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            let result_tx = result_tx.clone();
            let job_rx = &job_rx;
            scope.spawn(move || {
                loop {
                    let next = job_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok(job) = next else { return };
                    if interrupted.load(Ordering::Relaxed) {
                        continue;
                    }
                    let result = work(&job);
                    if result_tx.send((job, result)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(result_tx);
        let scanned = repo.with_cache(|cache| {
            cache.for_each_pack(wanted, &mut |id, size, entries| {
                if interrupted.load(Ordering::Relaxed) {
                    return Ok(false);
                }
                job_tx
                    .send(PackJob { id, size, entries })
                    .map_err(|_| Error::internal("the threads reading packs stopped"))?;
                while let Ok((job, result)) = result_rx.try_recv() {
                    done(job, result);
                }
                Ok(true)
            })
        });
        drop(job_tx);
        for (job, result) in result_rx {
            done(job, result);
        }
        scanned
    })
}
