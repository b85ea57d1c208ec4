//! Process probes that need no Nix: CPU time, resident memory, host name, wall clock.

use std::time::SystemTime;

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

/// CPU time of the process so far, user plus system.
pub fn cpu_ns() -> u64 {
    let u = rusage();
    timeval_ns(u.ru_utime).saturating_add(timeval_ns(u.ru_stime))
}

/// Peak resident set size of the process so far.
pub fn peak_rss_bytes() -> u64 {
    (rusage().ru_maxrss as u64).saturating_mul(1024)
}

/// Current resident set size, from /proc/self/statm (0 where unavailable).
pub fn rss_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else { return 0 };
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as u64;
    pages * page
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
