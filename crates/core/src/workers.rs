//! Parallel walks (`profile -j N`): worker `nix` processes hand out the units of the walk (see
//! [`walk_policy::unit_depth`]) among themselves, dynamically, through one table of claims that
//! all of them map.
//!
//! Every worker walks the structure above the units in the same order, so the n-th unit is the
//! same in each. A worker about to walk unit n claims its slot; if another worker already has
//! it, it skips the unit. A fast worker thus runs ahead and takes what a busy one has not
//! reached: the work is handed out as it is done, as nix-eval-jobs does, without a round trip.
//!
//! A slot is 0 (free), `2 * run` (claimed by worker run `run`, being walked), `2 * run + 1`
//! (walked by `run`), or lost: its worker died on it, killed by a signal, and nobody walks it
//! again. When a worker dies without writing its report, the coordinator frees the units it had
//! finished (a replacement walks them again, their costs died with it) and marks the one it died
//! on lost, with the signal. The first worker that meets a lost unit records it as an error node,
//! without evaluating it: the replacement, which walks from the start, always does.
//!
//! [`walk_policy::unit_depth`]: crate::walk_policy::unit_depth

use std::sync::atomic::{AtomicU32, Ordering};

/// Slots in a claims table: units a parallel walk can hand out. The table is a sparse file of
/// 4 bytes a slot; only the pages of units reached take memory.
pub const SLOTS: usize = 1 << 24;

/// Lost units: `LOST + signal` (not yet recorded), `LOST + 64 + signal` (recorded by a worker).
const LOST: u32 = u32::MAX - 128;

/// What claiming a unit gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This worker walks it.
    Mine,
    /// Another worker has it.
    Taken,
    /// Its worker was killed by this signal while walking it: record it as an error, do not
    /// evaluate it.
    Lost(i32),
}

/// A worker's part in the joined report: `worker 3`.
pub fn part_name(run: u32) -> String {
    format!("worker {run}")
}

/// The error a lost unit's node carries.
pub fn lost_message(signal: i32) -> String {
    let name = match signal {
        libc::SIGKILL => "SIGKILL (out of memory?)".to_string(),
        libc::SIGSEGV => "SIGSEGV".to_string(),
        libc::SIGABRT => "SIGABRT".to_string(),
        libc::SIGBUS => "SIGBUS".to_string(),
        libc::SIGTERM => "SIGTERM".to_string(),
        other => format!("signal {other}"),
    };
    format!("the worker walking this output was killed by {name}; it was not evaluated again")
}

/// The claims of one parallel walk, over memory every worker maps.
pub struct ClaimTable<'a> {
    slots: &'a [AtomicU32],
}

impl<'a> ClaimTable<'a> {
    pub fn new(slots: &'a [AtomicU32]) -> Self {
        ClaimTable { slots }
    }

    /// The last slot counts the units claimed so far (one past the highest index), so that
    /// scans stop there instead of touching the whole table.
    fn high_water(&self) -> &AtomicU32 {
        &self.slots[self.slots.len() - 1]
    }

    /// The slot of unit `index`, if the table has one.
    fn slot(&self, index: u32) -> Option<&AtomicU32> {
        self.slots[..self.slots.len() - 1].get(index as usize)
    }

    /// Worker run `run` (≥ 1) claims unit `index`. Units past the table's end are walked by
    /// whoever reaches them (never lost, possibly twice).
    pub fn claim(&self, index: u32, run: u32) -> Claim {
        let Some(slot) = self.slot(index) else { return Claim::Mine };
        match slot.compare_exchange(0, 2 * run, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                self.high_water().fetch_max(index + 1, Ordering::AcqRel);
                Claim::Mine
            }
            Err(value) if (LOST..LOST + 64).contains(&value) => {
                // Only the worker that moves it to recorded reports it.
                match slot.compare_exchange(value, value + 64, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => Claim::Lost((value - LOST) as i32),
                    Err(_) => Claim::Taken,
                }
            }
            Err(_) => Claim::Taken,
        }
    }

    /// Worker run `run` finished unit `index`.
    pub fn done(&self, index: u32, run: u32) {
        if let Some(slot) = self.slot(index) {
            let _ = slot.compare_exchange(2 * run, 2 * run + 1, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Worker run `run` died without a report, killed by `signal`: the units it finished are
    /// free again, the one it was walking is lost. Returns that one's index, if any.
    pub fn release_dead(&self, run: u32, signal: i32) -> Option<u32> {
        let mut lost = None;
        let claimed = self.high_water().load(Ordering::Acquire) as usize;
        for (i, slot) in self.slots[..claimed].iter().enumerate() {
            let value = slot.load(Ordering::Acquire);
            if value == 2 * run + 1 {
                slot.store(0, Ordering::Release);
            } else if value == 2 * run {
                slot.store(LOST + signal.clamp(0, 63) as u32, Ordering::Release);
                lost = Some(i as u32);
            }
        }
        lost
    }

    /// Units claimed so far.
    pub fn claimed(&self) -> u32 {
        self.high_water().load(Ordering::Acquire)
    }
}

/// What a worker's session needs from the claims table.
pub trait Claims: Send {
    fn claim(&mut self, index: u32) -> Claim;
    fn done(&mut self, index: u32);
}

const TABLE_BYTES: usize = SLOTS * std::mem::size_of::<AtomicU32>();

/// The claims table as a file mapped shared: the coordinator creates it, each worker maps it,
/// so every claim is an atomic operation on the same memory.
pub struct SharedClaims {
    slots: *mut AtomicU32,
}

// SAFETY: the mapping is only used through atomics, and lives as long as the value.
unsafe impl Send for SharedClaims {}
unsafe impl Sync for SharedClaims {}

impl SharedClaims {
    /// Creates the table's file at `path` (sparse: all free) and maps it.
    pub fn create(path: &std::path::Path) -> Result<SharedClaims, String> {
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(path).map_err(|e| format!("cannot create the claims table {}: {e}", path.display()))?;
        file.set_len(TABLE_BYTES as u64).map_err(|e| format!("cannot size the claims table {}: {e}", path.display()))?;
        Self::map(&file, path)
    }

    /// Maps the table the coordinator created at `path`.
    pub fn open(path: &std::path::Path) -> Result<SharedClaims, String> {
        let file = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(|e| format!("cannot open the claims table {}: {e}", path.display()))?;
        let len = file.metadata().map_err(|e| format!("cannot read the claims table {}: {e}", path.display()))?.len();
        if len != TABLE_BYTES as u64 {
            return Err(format!("the claims table {} has {len} bytes, not {TABLE_BYTES}: it was not made by this nix-evalcost", path.display()));
        }
        Self::map(&file, path)
    }

    fn map(file: &std::fs::File, path: &std::path::Path) -> Result<SharedClaims, String> {
        use std::os::fd::AsRawFd;
        // SAFETY: a shared mapping of the whole file, which has TABLE_BYTES bytes; the mapping
        // keeps the file after its descriptor closes.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), TABLE_BYTES, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, file.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(format!("cannot map the claims table {}: {}", path.display(), std::io::Error::last_os_error()));
        }
        Ok(SharedClaims { slots: ptr.cast() })
    }

    pub fn table(&self) -> ClaimTable<'_> {
        // SAFETY: the mapping holds SLOTS AtomicU32s (page-aligned, so aligned) and lives as
        // long as self.
        ClaimTable::new(unsafe { std::slice::from_raw_parts(self.slots, SLOTS) })
    }
}

impl Drop for SharedClaims {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what map mapped; no borrow of it outlives self.
        unsafe { libc::munmap(self.slots.cast(), TABLE_BYTES) };
    }
}

/// One worker run's claims on a shared table.
pub struct RunClaims {
    pub shared: SharedClaims,
    pub run: u32,
}

impl Claims for RunClaims {
    fn claim(&mut self, index: u32) -> Claim {
        self.shared.table().claim(index, self.run)
    }
    fn done(&mut self, index: u32) {
        self.shared.table().done(index, self.run)
    }
}

/// A worker's part in a parallel walk, inside its session.
pub struct Worker {
    pub claims: Box<dyn Claims>,
    /// Stop taking units once the process's resident memory exceeds this.
    pub max_rss: Option<u64>,
    /// Units met so far, in walk order (claimed or not).
    pub units_seen: u32,
    /// Units walked by this worker.
    pub units_walked: u32,
    /// Over its memory budget: this worker takes no more units.
    pub retired: bool,
    /// The first worker of the walk's only slot (`-j 1`): walked to the end, its report is the
    /// whole walk's, and it writes it joined ([`crate::join::join_sole_worker`]).
    pub sole: bool,
}

impl Worker {
    pub fn new(claims: Box<dyn Claims>, max_rss: Option<u64>, sole: bool) -> Worker {
        Worker { claims, max_rss, units_seen: 0, units_walked: 0, retired: false, sole }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(n: usize) -> Vec<AtomicU32> {
        (0..n).map(|_| AtomicU32::new(0)).collect()
    }

    #[test]
    fn each_unit_goes_to_the_first_claimant() {
        let slots = table(4);
        let t = ClaimTable::new(&slots);
        assert_eq!(t.claim(0, 1), Claim::Mine);
        assert_eq!(t.claim(0, 2), Claim::Taken);
        assert_eq!(t.claim(1, 2), Claim::Mine);
        t.done(0, 1);
        assert_eq!(t.claim(0, 3), Claim::Taken, "a walked unit stays taken");
        assert_eq!(t.claim(3, 1), Claim::Mine, "past the table (its last slot counts claims): walked rather than lost");
        assert_eq!(t.claimed(), 2);
    }

    #[test]
    fn a_dead_worker_frees_its_walked_units_and_loses_the_current_one() {
        let slots = table(5);
        let t = ClaimTable::new(&slots);
        for i in 0..3 {
            assert_eq!(t.claim(i, 1), Claim::Mine);
        }
        t.done(0, 1);
        t.done(1, 1);
        assert_eq!(t.claim(3, 2), Claim::Mine);
        assert_eq!(t.release_dead(1, libc::SIGKILL), Some(2));
        assert_eq!((t.claim(0, 3), t.claim(1, 3)), (Claim::Mine, Claim::Mine), "its walked units are walked again");
        assert_eq!(t.claim(2, 3), Claim::Lost(libc::SIGKILL), "the unit it died on is reported once, not retried");
        assert_eq!(t.claim(2, 4), Claim::Taken);
        assert_eq!(t.claim(3, 3), Claim::Taken, "other workers' units stay theirs");
        assert_eq!(t.release_dead(7, libc::SIGKILL), None);
        assert!(lost_message(libc::SIGKILL).contains("killed by SIGKILL (out of memory?)"));
    }

    #[test]
    fn a_shared_file_is_one_table_for_every_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("claims");
        let coordinator = SharedClaims::create(&path).unwrap();
        let mut one = RunClaims { shared: SharedClaims::open(&path).unwrap(), run: 1 };
        let mut two = RunClaims { shared: SharedClaims::open(&path).unwrap(), run: 2 };
        assert_eq!((one.claim(5), two.claim(5), two.claim(6)), (Claim::Mine, Claim::Taken, Claim::Mine));
        one.done(5);
        assert_eq!(coordinator.table().release_dead(2, libc::SIGKILL), Some(6));
        assert!(SharedClaims::create(&path).is_err(), "never reuses a table");
        std::fs::write(dir.path().join("short"), b"x").unwrap();
        assert!(SharedClaims::open(&dir.path().join("short")).err().unwrap().contains("not made by this nix-evalcost"));
    }

    #[test]
    fn concurrent_claims_give_every_unit_to_exactly_one_worker() {
        let slots = table(10_001);
        let t = ClaimTable::new(&slots);
        let won: Vec<Vec<u32>> = std::thread::scope(|s| {
            let handles: Vec<_> = (1..=4).map(|run| s.spawn({ let t = &t; move || (0..10_000).filter(|&i| t.claim(i, run) == Claim::Mine).collect::<Vec<u32>>() })).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<u32> = won.concat();
        all.sort_unstable();
        assert_eq!(all, (0..10_000).collect::<Vec<u32>>());
    }
}
