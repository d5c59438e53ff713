//! Reading packs two at a time: the index cache hands out each pack with its blobs in one
//! sorted pass, worker threads read and check them, and the results come back to the calling
//! thread. Memory holds one pack per worker and the blob lists of
//! the few packs queued for them, whatever the repository's size.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};

use crate::error::{Error, Result};
use crate::repo::IndexedRepository;
use crate::repo::id::PackId;
use crate::repo::pack::PackedBlob;

use super::check::Progress;

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

/// Runs `work` on every indexed pack that `wanted` accepts, [`THREADS`] at a time, showing
/// `phase` with the count of packs done out of `total`; returns each pack's id and size with
/// its result, in the order they finished. Stops handing out packs once `interrupted` is set.
pub fn for_each_pack<R: Send>(
    repo: &IndexedRepository,
    wanted: &dyn Fn(&PackId) -> bool,
    interrupted: &AtomicBool,
    work: &(dyn Fn(&PackJob) -> R + Sync),
    (phase, total): (&'static str, usize),
    progress: &mut dyn FnMut(&Progress),
) -> Result<Vec<(PackId, u64, R)>> {
    let (job_tx, job_rx) = mpsc::sync_channel::<PackJob>(THREADS);
    let job_rx = Mutex::new(job_rx);
    let (result_tx, result_rx) = mpsc::channel::<(PackJob, R)>();
    let mut results = Vec::new();
    // The blob lists are not kept: a check names what is wrong.
    let mut done = |(job, result): (PackJob, R)| {
        results.push((job.id, job.size, result));
        progress(&Progress {
            phase,
            done: results.len() as u64,
            total: total as u64,
            bytes: repo.storage().bytes_read(),
        });
    };
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
        // Results are only recorded while the cache is locked for the scan: recording must not
        // use the cache.
        let scanned = repo.with_cache(|cache| {
            cache.for_each_pack(wanted, &mut |id, size, entries| {
                if interrupted.load(Ordering::Relaxed) {
                    return Ok(false);
                }
                job_tx
                    .send(PackJob { id, size, entries })
                    .map_err(|_| Error::internal("the threads reading packs stopped"))?;
                while let Ok(finished) = result_rx.try_recv() {
                    done(finished);
                }
                Ok(true)
            })
        });
        drop(job_tx);
        for finished in result_rx {
            done(finished);
        }
        scanned
    })?;
    Ok(results)
}
