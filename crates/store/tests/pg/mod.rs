//! A private PostgreSQL server for the tests: initdb in a temporary directory, listening on a
//! Unix socket there only (no TCP), started as the `postgres` user when the tests run as root,
//! and stopped when the test process exits (atexit; PR_SET_PDEATHSIG would fire when the test
//! *thread* that started it ends). Each test gets a database of its own.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub struct Server {
    dir: PathBuf,
    _child: Mutex<Child>,
    next_db: AtomicUsize,
}

fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql").ok()?.filter_map(|e| e.ok().map(|e| e.path().join("bin"))).collect();
    dirs.sort();
    dirs.into_iter().rev().find(|d| d.join("postgres").is_file())
}

/// The uid and gid of `postgres`, when we are root (initdb refuses to run as root).
fn postgres_ids() -> Option<(u32, u32)> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
}

fn as_postgres(cmd: &mut Command, ids: Option<(u32, u32)>) {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if let Some((uid, gid)) = ids {
                if libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

static SERVER_PID: AtomicI32 = AtomicI32::new(0);
static SERVER_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Fast shutdown (SIGINT), waited for, then the directory goes.
extern "C" fn stop_server() {
    let pid = SERVER_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: signalling and reaping our own child.
        unsafe {
            libc::kill(pid, libc::SIGINT);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    if let Some(dir) = SERVER_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The server of this test process, started on first use. Panics with what to install when
/// PostgreSQL is missing: every store test runs on both engines.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let bin = bin_dir().expect("PostgreSQL is not installed (Debian: apt-get install postgresql); scripts/nix-env installs it");
        let dir = tempfile::Builder::new().prefix("evalcost-pg-").tempdir().unwrap().keep();
        let ids = postgres_ids();
        if let Some((uid, gid)) = ids {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        let data = dir.join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb.args(["-D"]).arg(&data).args(["-U", "postgres", "--auth=trust", "-E", "UTF8"]).stdout(Stdio::null()).stderr(Stdio::piped());
        as_postgres(&mut initdb, ids);
        let out = initdb.output().unwrap();
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let mut postgres = Command::new(bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(&data)
            .args(["-c", "listen_addresses=", "-c"])
            .arg(format!("unix_socket_directories={}", dir.display()))
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_postgres(&mut postgres, ids);
        let child = postgres.spawn().unwrap();
        SERVER_PID.store(child.id() as i32, Ordering::SeqCst);
        SERVER_DIR.set(dir.clone()).unwrap();
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(stop_server) };
        let socket = dir.join(".s.PGSQL.5432");
        let start = Instant::now();
        while !socket.exists() {
            assert!(start.elapsed() < Duration::from_secs(30), "PostgreSQL did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(200));
        Server { dir, _child: Mutex::new(child), next_db: AtomicUsize::new(0) }
    })
}

impl Server {
    fn url_of(&self, db: &str) -> String {
        format!("postgresql://postgres@localhost/{db}?host={}", self.dir.display())
    }

    /// A fresh, empty database; its URL.
    pub fn database(&self) -> String {
        let name = format!("t{}_{}", std::process::id(), self.next_db.fetch_add(1, Ordering::Relaxed));
        let mut client = postgres::Client::connect(&self.url_of("postgres"), postgres::NoTls).unwrap();
        client.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        self.url_of(&name)
    }
}
