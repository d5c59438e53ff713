//! Test-only fault injection (Cargo feature `fault-injection`): an OpenDAL layer that makes a
//! share of storage operations fail, fail after doing their work, stall, or read short, so the
//! tests can check that every command survives an unreliable store: it succeeds, or fails with
//! its documented exit code and leaves the repository sound.
//!
//! Active only when `PGCAIRN_FAULTS` is set, e.g.
//! `PGCAIRN_FAULTS="rate=0.1,seed=42,kinds=fail,fail-after,delay,truncate"`:
//!
//! | key | meaning |
//! |---|---|
//! | `rate` | share of operations that get a fault, 0 to 1 |
//! | `seed` | seeds the choices, mixed with the process id so that concurrent processes differ [0] |
//! | `kinds` | `fail` (an error, temporary or permanent, before the operation), `fail-after` (writes and deletes: done, then reported failed, as when the response is lost), `delay` (50–500 ms more), `truncate` (a read returns fewer bytes than the object holds, then EOF) [all] |
//! | `ops` | operations that may get a fault: `read`, `write`, `stat`, `list`, `delete` [all] |
//! | `log` | a file to append one line to per fault injected |
//!
//! A list value runs up to the next `key=`. Each operation draws once: whether it gets a
//! fault, and which of the kinds that apply to it. An invalid specification fails every
//! operation with a configuration error that names it.

use std::fmt::{self, Debug};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opendal::raw::*;
use opendal::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The environment variable that turns faults on and says which.
pub const ENV: &str = "PGCAIRN_FAULTS";

/// `op` with the faults `PGCAIRN_FAULTS` asks for; `op` itself when it is unset.
pub fn wrap(op: Operator) -> Operator {
    match std::env::var(ENV) {
        Ok(spec) => wrap_with(op, &spec),
        Err(std::env::VarError::NotPresent) => op,
        Err(std::env::VarError::NotUnicode(_)) => {
            op.layer(FaultLayer::invalid(format!("{ENV} is not valid UTF-8")))
        }
    }
}

fn wrap_with(op: Operator, spec: &str) -> Operator {
    match Spec::parse(spec) {
        Ok(spec) => op.layer(FaultLayer::new(spec, std::process::id())),
        Err(message) => op.layer(FaultLayer::invalid(format!("{ENV}={spec:?}: {message}"))),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Fail,
    FailAfter,
    Delay,
    Truncate,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Fail, Kind::FailAfter, Kind::Delay, Kind::Truncate];

    fn name(self) -> &'static str {
        match self {
            Kind::Fail => "fail",
            Kind::FailAfter => "fail-after",
            Kind::Delay => "delay",
            Kind::Truncate => "truncate",
        }
    }

    fn applies_to(self, op: Op) -> bool {
        match self {
            Kind::Fail | Kind::Delay => true,
            Kind::FailAfter => matches!(op, Op::Write | Op::Delete),
            Kind::Truncate => op == Op::Read,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Read,
    Write,
    Stat,
    List,
    Delete,
}

impl Op {
    const ALL: [Op; 5] = [Op::Read, Op::Write, Op::Stat, Op::List, Op::Delete];

    fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Stat => "stat",
            Op::List => "list",
            Op::Delete => "delete",
        }
    }

    fn operation(self) -> Operation {
        match self {
            Op::Read => Operation::Read,
            Op::Write => Operation::Write,
            Op::Stat => Operation::Stat,
            Op::List => Operation::List,
            Op::Delete => Operation::Delete,
        }
    }
}

fn by_name<T: Copy>(all: &[T], name_of: fn(T) -> &'static str, name: &str) -> Option<T> {
    all.iter().copied().find(|x| name_of(*x) == name)
}

#[derive(Clone, Debug, PartialEq)]
struct Spec {
    rate: f64,
    seed: u64,
    kinds: Vec<Kind>,
    ops: Vec<Op>,
    log: Option<PathBuf>,
}

impl Spec {
    fn parse(text: &str) -> std::result::Result<Spec, String> {
        let mut spec = Spec {
            rate: 0.0,
            seed: 0,
            kinds: Kind::ALL.to_vec(),
            ops: Op::ALL.to_vec(),
            log: None,
        };
        let (mut kinds, mut ops) = (Vec::new(), Vec::new());
        // The list that a token without `=` continues.
        let mut list: Option<&str> = None;
        for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (key, value) = match token.split_once('=') {
                Some((key, value)) => (key.trim(), value.trim()),
                None => (list.ok_or(format!("{token:?} is not key=value"))?, token),
            };
            list = None;
            match key {
                "rate" => {
                    spec.rate = value
                        .parse()
                        .ok()
                        .filter(|r| (0.0..=1.0).contains(r))
                        .ok_or(format!("rate {value:?} is not a number from 0 to 1"))?
                }
                "seed" => {
                    spec.seed = value
                        .parse()
                        .map_err(|_| format!("seed {value:?} is not a number"))?
                }
                "log" => spec.log = Some(PathBuf::from(value)),
                "kinds" => {
                    kinds.push(
                        by_name(&Kind::ALL, Kind::name, value)
                            .ok_or(format!("unknown fault kind {value:?}"))?,
                    );
                    list = Some("kinds");
                }
                "ops" => {
                    ops.push(
                        by_name(&Op::ALL, Op::name, value)
                            .ok_or(format!("unknown operation {value:?}"))?,
                    );
                    list = Some("ops");
                }
                other => return Err(format!("unknown key {other:?}")),
            }
        }
        if !kinds.is_empty() {
            spec.kinds = kinds;
        }
        if !ops.is_empty() {
            spec.ops = ops;
        }
        Ok(spec)
    }
}

/// What one operation gets.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// An error before anything is done; temporary or not.
    Fail {
        temporary: bool,
    },
    FailAfter,
    Delay(Duration),
    /// Keep this share of the bytes read (below 1).
    Truncate(f64),
}

/// Draws the faults, and writes them to the log.
struct Injector {
    spec: Spec,
    rng: Mutex<ChaCha8Rng>,
    pid: u32,
}

impl Injector {
    fn new(spec: Spec, pid: u32) -> Injector {
        // Mixed with the pid so that processes started with one seed draw differently.
        let seed = spec.seed ^ u64::from(pid).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Injector {
            spec,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            pid,
        }
    }

    /// The fault for one `op` on `path`, if it gets one.
    fn draw(&self, op: Op, path: &str) -> Option<Fault> {
        if !self.spec.ops.contains(&op) {
            return None;
        }
        let kinds: Vec<Kind> = self
            .spec
            .kinds
            .iter()
            .copied()
            .filter(|k| k.applies_to(op))
            .collect();
        if kinds.is_empty() {
            return None;
        }
        let fault = {
            // A panic elsewhere while holding the lock leaves the generator usable.
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            if !rng.gen_bool(self.spec.rate) {
                return None;
            }
            match kinds[rng.gen_range(0..kinds.len())] {
                Kind::Fail => Fault::Fail {
                    temporary: rng.gen_bool(0.5),
                },
                Kind::FailAfter => Fault::FailAfter,
                Kind::Delay => Fault::Delay(Duration::from_millis(rng.gen_range(50..=500))),
                Kind::Truncate => Fault::Truncate(rng.gen_range(0.0..0.95)),
            }
        };
        self.record(op, path, fault);
        Some(fault)
    }

    /// A number below `n`, from the same generator.
    fn below(&self, n: usize) -> usize {
        self.rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .gen_range(0..n)
    }

    fn record(&self, op: Op, path: &str, fault: Fault) {
        let Some(log) = &self.spec.log else {
            return;
        };
        let what = match fault {
            Fault::Fail { temporary: true } => "fail (temporary)".to_string(),
            Fault::Fail { temporary: false } => "fail (permanent)".to_string(),
            Fault::FailAfter => "fail-after".to_string(),
            Fault::Delay(d) => format!("delay {} ms", d.as_millis()),
            Fault::Truncate(share) => format!("truncate to {:.0}%", share * 100.0),
        };
        // One short line per O_APPEND write, so processes sharing the log do not interleave.
        // The log is a test aid: failing to write it must not change what the operation does.
        let line = format!("{} {} {what} {path}\n", self.pid, op.name());
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

fn injected(op: Op, path: &str, what: &str, temporary: bool) -> Error {
    Error::new(ErrorKind::Unexpected, format!("injected fault: {what}"))
        .with_operation(op.operation())
        .with_context("path", path)
        .with_temporary(temporary)
        .with_permanent(!temporary)
}

/// The layer. Built from a valid [`Spec`], or carrying the reason the specification is
/// invalid, which every operation then reports.
#[derive(Clone)]
struct FaultLayer {
    injector: std::result::Result<Arc<Injector>, String>,
}

impl Debug for FaultLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.injector {
            Ok(injector) => write!(f, "FaultLayer({:?})", injector.spec),
            Err(message) => write!(f, "FaultLayer(invalid: {message})"),
        }
    }
}

impl FaultLayer {
    fn new(spec: Spec, pid: u32) -> FaultLayer {
        FaultLayer {
            injector: Ok(Arc::new(Injector::new(spec, pid))),
        }
    }

    fn invalid(message: String) -> FaultLayer {
        FaultLayer {
            injector: Err(message),
        }
    }
}

impl Layer for FaultLayer {
    fn apply_service(&self, inner: Servicer) -> Servicer {
        Arc::new(FaultService {
            inner,
            injector: self.injector.clone(),
        })
    }
}

#[derive(Debug)]
struct FaultService {
    inner: Servicer,
    injector: std::result::Result<Arc<Injector>, String>,
}

impl Debug for Injector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Injector({:?}, pid {})", self.spec, self.pid)
    }
}

impl FaultService {
    /// The fault for `op` on `path`; an error when the specification is invalid.
    fn draw(&self, op: Op, path: &str) -> Result<Option<Fault>> {
        match &self.injector {
            Ok(injector) => Ok(injector.draw(op, path)),
            Err(message) => Err(Error::new(ErrorKind::ConfigInvalid, message.clone())
                .with_operation(op.operation())),
        }
    }

    /// The fault for `op` on `path`, but `fail`, returned as the error.
    fn draw_unless_fail(&self, op: Op, path: &str) -> Result<Option<Fault>> {
        match self.draw(op, path)? {
            Some(Fault::Fail { temporary }) => Err(injected(op, path, "fail", temporary)),
            other => Ok(other),
        }
    }

    /// The fault to apply before `op` on `path` starts: `fail` returned as the error, `delay`
    /// slept; what is left for after it.
    async fn before(&self, op: Op, path: &str) -> Result<Option<Fault>> {
        match self.draw_unless_fail(op, path)? {
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                Ok(None)
            }
            other => Ok(other),
        }
    }
}

impl Service for FaultService {
    type Reader = FaultReader;
    type Writer = FaultWriter;
    type Lister = FaultLister;
    type Deleter = FaultDeleter;
    type Copier = oio::Copier;
    type Composer = oio::Composer;

    fn info(&self) -> ServiceInfo {
        self.inner.info()
    }

    fn capability(&self) -> Capability {
        self.inner.capability()
    }

    async fn create_dir(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpCreateDir,
    ) -> Result<RpCreateDir> {
        self.inner.create_dir(ctx, path, args).await
    }

    async fn stat(&self, ctx: &OperationContext, path: &str, args: OpStat) -> Result<RpStat> {
        self.before(Op::Stat, path).await?;
        self.inner.stat(ctx, path, args).await
    }

    fn read(&self, ctx: &OperationContext, path: &str, args: OpRead) -> Result<Self::Reader> {
        let fault = self.draw_unless_fail(Op::Read, path)?;
        Ok(FaultReader {
            inner: self.inner.read(ctx, path, args)?,
            fault: Mutex::new(fault),
        })
    }

    fn write(&self, ctx: &OperationContext, path: &str, args: OpWrite) -> Result<Self::Writer> {
        let fault = self.draw_unless_fail(Op::Write, path)?;
        Ok(FaultWriter {
            inner: self.inner.write(ctx, path, args)?,
            fault,
            path: path.to_string(),
        })
    }

    fn delete(&self, ctx: &OperationContext) -> Result<Self::Deleter> {
        Ok(FaultDeleter {
            inner: self.inner.delete(ctx)?,
            service: FaultService {
                inner: self.inner.clone(),
                injector: self.injector.clone(),
            },
            lost: None,
        })
    }

    fn list(&self, ctx: &OperationContext, path: &str, args: OpList) -> Result<Self::Lister> {
        let fault = self.draw(Op::List, path)?;
        let fail_after = match fault {
            Some(Fault::Fail { temporary }) => {
                // Some entries may come before the failure, as when a later page's request
                // fails.
                let entries = self.injector.as_ref().map_or(0, |i| i.below(4));
                Some((entries, temporary))
            }
            _ => None,
        };
        let delay = match fault {
            Some(Fault::Delay(d)) => Some(d),
            _ => None,
        };
        Ok(FaultLister {
            inner: self.inner.list(ctx, path, args)?,
            fail_after,
            delay,
            path: path.to_string(),
        })
    }

    fn copy(
        &self,
        ctx: &OperationContext,
        from: &str,
        to: &str,
        args: OpCopy,
    ) -> Result<Self::Copier> {
        self.inner.copy(ctx, from, to, args)
    }

    fn compose(&self, ctx: &OperationContext, to: &str, args: OpCompose) -> Result<Self::Composer> {
        self.inner.compose(ctx, to, args)
    }

    async fn rename(
        &self,
        ctx: &OperationContext,
        from: &str,
        to: &str,
        args: OpRename,
    ) -> Result<RpRename> {
        self.inner.rename(ctx, from, to, args).await
    }

    async fn presign(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpPresign,
    ) -> Result<RpPresign> {
        self.inner.presign(ctx, path, args).await
    }
}

struct FaultReader {
    inner: oio::Reader,
    /// Taken by the first read: one fault per operation.
    fault: Mutex<Option<Fault>>,
}

impl FaultReader {
    fn take_fault(&self) -> Option<Fault> {
        self.fault.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl oio::Read for FaultReader {
    async fn open(&self, range: BytesRange) -> Result<(RpRead, Box<dyn oio::ReadStreamDyn>)> {
        let fault = self.take_fault();
        if let Some(Fault::Delay(d)) = fault {
            tokio::time::sleep(d).await;
        }
        let (rp, stream) = self.inner.open(range).await?;
        let Some(Fault::Truncate(share)) = fault else {
            return Ok((rp, stream));
        };
        // The whole stream is read to know how much to keep: objects here are small.
        let mut stream = stream;
        let all = stream.read_all_dyn().await?;
        let keep = truncated_len(all.len(), share);
        let stream: Box<dyn oio::ReadStreamDyn> = Box::new(all.slice(..keep).to_bytes());
        Ok((rp, stream))
    }

    async fn read(&self, range: BytesRange) -> Result<(RpRead, Buffer)> {
        let fault = self.take_fault();
        if let Some(Fault::Delay(d)) = fault {
            tokio::time::sleep(d).await;
        }
        let (rp, mut buf) = self.inner.read(range).await?;
        if let Some(Fault::Truncate(share)) = fault {
            buf.truncate(truncated_len(buf.len(), share));
        }
        Ok((rp, buf))
    }
}

/// Fewer bytes than `len` (none when there are none).
fn truncated_len(len: usize, share: f64) -> usize {
    ((len as f64 * share) as usize).min(len.saturating_sub(1))
}

struct FaultWriter {
    inner: oio::Writer,
    fault: Option<Fault>,
    path: String,
}

impl oio::Write for FaultWriter {
    async fn write(&mut self, bs: Buffer) -> Result<()> {
        self.inner.write(bs).await
    }

    async fn close(&mut self) -> Result<Metadata> {
        if let Some(Fault::Delay(d)) = self.fault {
            tokio::time::sleep(d).await;
        }
        let meta = self.inner.close().await?;
        if self.fault == Some(Fault::FailAfter) {
            // Written and published: only the answer is lost, as when a connection drops.
            return Err(injected(Op::Write, &self.path, "fail-after", true));
        }
        Ok(meta)
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

struct FaultLister {
    inner: oio::Lister,
    /// Fail after this many more entries; temporary or not.
    fail_after: Option<(usize, bool)>,
    delay: Option<Duration>,
    path: String,
}

impl oio::List for FaultLister {
    async fn next(&mut self) -> Result<Option<oio::Entry>> {
        if let Some(d) = self.delay.take() {
            tokio::time::sleep(d).await;
        }
        let Some((left, temporary)) = &mut self.fail_after else {
            return self.inner.next().await;
        };
        let failure = injected(Op::List, &self.path, "fail", *temporary);
        if *left == 0 {
            return Err(failure);
        }
        *left -= 1;
        // A listing with a fault never completes, however few entries it has.
        match self.inner.next().await? {
            None => Err(failure),
            entry => Ok(entry),
        }
    }
}

struct FaultDeleter {
    inner: oio::Deleter,
    service: FaultService,
    /// A path whose deletion is to be reported failed once done (`fail-after`).
    lost: Option<String>,
}

impl oio::Delete for FaultDeleter {
    async fn delete(&mut self, path: &str, args: OpDelete) -> Result<()> {
        if self.service.before(Op::Delete, path).await? == Some(Fault::FailAfter) {
            self.lost = Some(path.to_string());
        }
        self.inner.delete(path, args).await
    }

    async fn close(&mut self) -> Result<()> {
        self.inner.close().await?;
        match self.lost.take() {
            Some(path) => Err(injected(Op::Delete, &path, "fail-after", true)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Spec {
        Spec::parse(text).unwrap()
    }

    /// A memory operator with the faults of `text`, drawn as process `pid`.
    fn faulty(text: &str, pid: u32) -> Operator {
        Operator::new(services::Memory::default())
            .unwrap()
            .layer(FaultLayer::new(spec(text), pid))
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn is_injected(err: &Error) -> bool {
        err.kind() == ErrorKind::Unexpected && err.to_string().contains("injected fault")
    }

    #[test]
    fn specifications_parse_with_lists_running_to_the_next_key() {
        let s = spec("rate=0.1,seed=42,kinds=fail,fail-after,delay,truncate,log=/tmp/f");
        assert_eq!(s.rate, 0.1);
        assert_eq!(s.seed, 42);
        assert_eq!(s.kinds, Kind::ALL.to_vec());
        assert_eq!(s.ops, Op::ALL.to_vec());
        assert_eq!(s.log, Some(PathBuf::from("/tmp/f")));
        let s = spec("ops=write,delete,rate=1,kinds=fail-after");
        assert_eq!(s.ops, vec![Op::Write, Op::Delete]);
        assert_eq!(s.kinds, vec![Kind::FailAfter]);
        assert_eq!(s.rate, 1.0);
        for bad in [
            "rate=2",
            "rate=x",
            "seed=-1",
            "kinds=explode",
            "ops=rename",
            "speed=1",
            "fail",
            "rate=0.1,fail",
        ] {
            assert!(Spec::parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn an_invalid_specification_fails_every_operation_naming_it() {
        let op = wrap_with(
            Operator::new(services::Memory::default()).unwrap(),
            "rate=lots",
        );
        let err = block_on(op.write("a", b"x".to_vec())).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConfigInvalid);
        assert!(err.to_string().contains("PGCAIRN_FAULTS"), "{err}");
    }

    #[test]
    fn fail_fails_every_operation_before_it_is_done() {
        let op = faulty("rate=1,kinds=fail", 1);
        block_on(async {
            let err = op.write("a", b"hello".to_vec()).await.unwrap_err();
            assert!(is_injected(&err), "{err}");
            assert!(
                !op.exists("a").await.is_ok_and(|e| e),
                "a failed write stored it"
            );
            for err in [
                op.read("a").await.unwrap_err(),
                op.stat("a").await.unwrap_err(),
                op.delete("a").await.unwrap_err(),
                op.list("/").await.unwrap_err(),
            ] {
                assert!(is_injected(&err), "{err}");
            }
        });
        // Both kinds of failure are drawn.
        let injector = Injector::new(spec("rate=1,kinds=fail"), 1);
        let temporary: Vec<bool> = (0..64)
            .map(|_| match injector.draw(Op::Read, "x") {
                Some(Fault::Fail { temporary }) => temporary,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(temporary.contains(&true) && temporary.contains(&false));
    }

    #[test]
    fn fail_after_does_the_write_or_delete_then_reports_failure() {
        let op = faulty("rate=1,kinds=fail-after", 2);
        block_on(async {
            let err = op.write("a", b"hello".to_vec()).await.unwrap_err();
            assert!(is_injected(&err) && err.is_temporary(), "{err}");
            // Reads get no fault-after: there is nothing to lose.
            assert_eq!(op.read("a").await.unwrap().to_vec(), b"hello");
            let err = op.delete("a").await.unwrap_err();
            assert!(is_injected(&err), "{err}");
            assert!(!op.exists("a").await.unwrap(), "the delete was not done");
        });
    }

    #[test]
    fn truncate_reads_fewer_bytes_than_the_object_holds() {
        let op = faulty("rate=1,kinds=truncate", 3);
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        block_on(async {
            op.write("a", data.clone()).await.unwrap();
            assert_eq!(op.stat("a").await.unwrap().content_length(), 10_000);
            for _ in 0..8 {
                let got = op.read("a").await.map(|b| b.to_vec());
                // OpenDAL may notice the short read itself; either way no full object.
                if let Ok(got) = got {
                    assert!(got.len() < data.len());
                    assert_eq!(got, data[..got.len()]);
                }
                let got = op.read_with("a").range(100..5100).await.map(|b| b.to_vec());
                if let Ok(got) = got {
                    assert!(got.len() < 5000);
                    assert_eq!(got, data[100..100 + got.len()]);
                }
            }
        });
    }

    #[test]
    fn delay_slows_operations_down_and_changes_nothing_else() {
        let op = faulty("rate=1,kinds=delay", 4);
        block_on(async {
            let started = std::time::Instant::now();
            op.write("a", b"hello".to_vec()).await.unwrap();
            assert_eq!(op.read("a").await.unwrap().to_vec(), b"hello");
            assert_eq!(op.list("/").await.unwrap().len(), 1);
            op.delete("a").await.unwrap();
            assert!(started.elapsed() >= Duration::from_millis(4 * 50));
        });
    }

    #[test]
    fn faults_go_only_to_the_operations_named() {
        let op = faulty("rate=1,kinds=fail,ops=write", 5);
        block_on(async {
            assert!(op.write("a", b"x".to_vec()).await.is_err());
            assert!(op.read("a").await.unwrap_err().kind() == ErrorKind::NotFound);
            assert!(op.list("/").await.unwrap().is_empty());
        });
        let op = faulty("rate=0,kinds=fail", 5);
        block_on(async {
            op.write("a", b"x".to_vec()).await.unwrap();
            assert_eq!(op.read("a").await.unwrap().to_vec(), b"x");
        });
    }

    #[test]
    fn draws_follow_the_rate_the_seed_and_the_pid() {
        let draws = |text: &str, pid: u32| -> Vec<Option<Fault>> {
            let injector = Injector::new(spec(text), pid);
            (0..2000).map(|_| injector.draw(Op::Write, "p")).collect()
        };
        let a = draws("rate=0.1,seed=42", 100);
        assert_eq!(a, draws("rate=0.1,seed=42", 100), "same seed and pid");
        assert_ne!(a, draws("rate=0.1,seed=42", 101), "another process");
        assert_ne!(a, draws("rate=0.1,seed=43", 100), "another seed");
        let hits = a.iter().filter(|f| f.is_some()).count();
        assert!(
            (120..=280).contains(&hits),
            "{hits} faults in 2000 at rate 0.1"
        );
        let kinds: Vec<_> = a.iter().flatten().collect();
        assert!(kinds.iter().any(|f| matches!(f, Fault::FailAfter)));
        assert!(kinds.iter().any(|f| matches!(f, Fault::Delay(_))));
        assert!(
            !kinds.iter().any(|f| matches!(f, Fault::Truncate(_))),
            "writes are never truncated"
        );
    }

    #[test]
    fn every_fault_is_logged_on_a_line_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("faults.log");
        let injector = Injector::new(spec(&format!("rate=1,log={}", log.display())), 7);
        for _ in 0..10 {
            injector.draw(Op::Read, "data/ab/cd");
        }
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.lines().count(), 10);
        assert!(
            text.lines()
                .all(|l| l.starts_with("7 read ") && l.ends_with(" data/ab/cd"))
        );
    }
}
