//! Process probes that need no Nix: CPU time, resident memory, host name, wall clock.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

fn rusage() -> libc::rusage {
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF cannot fail.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    }
}

fn timeval_ns(t: libc::timeval) -> u64 {
    (t.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_usec as u64 * 1000)
}

/// What one getrusage call tells: CPU time (user + system) and peak RSS, so far.
#[derive(Clone, Copy)]
pub struct Usage {
    pub cpu_ns: u64,
    pub peak_rss_bytes: u64,
}

pub fn usage() -> Usage {
    let u = rusage();
    Usage {
        cpu_ns: timeval_ns(u.ru_utime).saturating_add(timeval_ns(u.ru_stime)),
        peak_rss_bytes: (u.ru_maxrss as u64).saturating_mul(1024),
    }
}

/// Current resident set size, sampled at most once per millisecond: a walk asks at every node
/// (tens of microseconds apart) and a syscall costs microseconds, so within a millisecond the
/// previous sample is returned.
pub fn rss_bytes() -> u64 {
    thread_local! {
        static SAMPLE: std::cell::Cell<Option<(Instant, u64)>> = const { std::cell::Cell::new(None) };
    }
    SAMPLE.with(|sample| match sample.get() {
        Some((at, rss)) if at.elapsed() < Duration::from_millis(1) => rss,
        _ => {
            let rss = read_rss_bytes();
            sample.set(Some((Instant::now(), rss)));
            rss
        }
    })
}

/// Resident set size from /proc/self/statm (0 where unavailable), opened once, read with pread.
fn read_rss_bytes() -> u64 {
    use std::os::unix::fs::FileExt;
    static STATM: OnceLock<Option<std::fs::File>> = OnceLock::new();
    static PAGE: OnceLock<u64> = OnceLock::new();
    let Some(file) = STATM.get_or_init(|| std::fs::File::open("/proc/self/statm").ok()) else { return 0 };
    let mut buf = [0u8; 128];
    let Ok(n) = file.read_at(&mut buf, 0) else { return 0 };
    let pages: u64 = std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|s| s.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    pages * *PAGE.get_or_init(|| unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as u64)
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    if !ok {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Now, as RFC 3339 in UTC with second precision.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// 64 random bits from the kernel (for the sampling decision and report names). Falls back to
/// the clock and pid should getrandom fail: a draw, not a secret.
pub fn random_u64() -> u64 {
    let mut bits = 0u64;
    // SAFETY: getrandom writes at most 8 bytes into `bits`.
    let n = unsafe { libc::getrandom((&mut bits as *mut u64).cast(), 8, 0) };
    if n == 8 {
        return bits;
    }
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos.rotate_left(17) ^ (std::process::id() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}
