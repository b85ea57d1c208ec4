//! Passive profiling: the plugin configured in nix.conf measures every evaluating `nix`
//! process (or a sample of them) and leaves one report per process in a directory.
//!
//! What is decided here, without Nix: the configuration (nix.conf settings, overridden by the
//! environment), the sampling decision, the report's file name, what the command line says the
//! entry points are, and which old reports the retention limits remove.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The nix.conf settings the plugin registers, and the environment variables that override
/// them for one command. (Setting name, variable, what it is.)
pub const SETTINGS: [(&str, &str, &str); 5] = [
    ("evalcost-dir", "NIX_EVALCOST_DIR", "directory for passive reports; empty: passive profiling off"),
    ("evalcost-sample-rate", "NIX_EVALCOST_SAMPLE_RATE", "fraction of evaluating processes measured, 0 to 1"),
    ("evalcost-stacks", "NIX_EVALCOST_STACKS", "record call stacks in passive reports (true/false)"),
    ("evalcost-keep", "NIX_EVALCOST_KEEP", "most passive reports kept in the directory; 0: no limit"),
    ("evalcost-keep-days", "NIX_EVALCOST_KEEP_DAYS", "passive reports older than this many days are removed; 0: no limit"),
];

/// The variable that overrides `evalcost-dir` (set empty, it turns passive profiling off).
pub const DIR_VAR: &str = SETTINGS[0].1;

/// Defaults of the settings (as nix.conf strings), in [`SETTINGS`] order.
pub const DEFAULTS: [&str; 5] = ["", "1", "false", "1000", "30"];

/// The raw values of the settings, in [`SETTINGS`] order, as Nix holds them.
pub type RawSettings = [String; 5];

/// Passive profiling, as configured for this process.
#[derive(Clone, Debug, PartialEq)]
pub struct PassiveConfig {
    pub dir: PathBuf,
    pub sample_rate: f64,
    pub stacks: bool,
    /// Most reports kept (None: no limit).
    pub keep: Option<usize>,
    /// Oldest report kept (None: no limit).
    pub keep_for: Option<Duration>,
}

/// Resolves the configuration: each setting from the environment if set there, else from Nix.
/// `Ok(None)`: passive profiling is off (no directory). An invalid value is an error naming the
/// setting, so the plugin can warn once and stay out of the way.
pub fn resolve(nix: &RawSettings, env: impl Fn(&str) -> Option<String>) -> Result<Option<PassiveConfig>, String> {
    let value = |i: usize| -> (String, String) {
        let (setting, var, _) = SETTINGS[i];
        match env(var) {
            Some(v) => (v.trim().to_string(), format!("${var}")),
            None => (nix[i].trim().to_string(), setting.to_string()),
        }
    };
    let (dir, _) = value(0);
    if dir.is_empty() {
        return Ok(None);
    }
    let (rate, name) = value(1);
    let sample_rate = parse_rate(&rate).map_err(|e| format!("{name} = '{rate}': {e}"))?;
    let (stacks, name) = value(2);
    let stacks = parse_bool(&stacks).ok_or_else(|| format!("{name} = '{stacks}': expected true or false"))?;
    let (keep, name) = value(3);
    let keep: usize = keep.parse().map_err(|_| format!("{name} = '{keep}': expected a whole number of reports"))?;
    let (days, name) = value(4);
    let days: u64 = days.parse().map_err(|_| format!("{name} = '{days}': expected a whole number of days"))?;
    Ok(Some(PassiveConfig {
        dir: PathBuf::from(dir),
        sample_rate,
        stacks,
        keep: (keep > 0).then_some(keep),
        keep_for: (days > 0).then(|| Duration::from_secs(days.saturating_mul(86_400))),
    }))
}

fn parse_rate(text: &str) -> Result<f64, &'static str> {
    let rate: f64 = text.parse().map_err(|_| "expected a number between 0 and 1")?;
    if !(0.0..=1.0).contains(&rate) {
        return Err("expected a number between 0 and 1");
    }
    Ok(rate)
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// Whether a process is measured, given the rate and a uniform draw `u` in [0, 1).
pub fn sampled(rate: f64, u: f64) -> bool {
    u < rate
}

/// A uniform draw in [0, 1) from 53 random bits.
pub fn unit_interval(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Where one process's report goes: `<dir>/<UTC time>-<host>-<pid>-<nonce>.json[.gz]`. Time
/// first, so names sort by age; pid and a random nonce make two processes' names differ even
/// on one host in one second (pids are reused across containers).
pub fn report_file(dir: &Path, started_at: &str, hostname: &str, pid: u32, nonce: u32, gzip: bool) -> PathBuf {
    let stamp: String = started_at.chars().filter(|c| c.is_ascii_digit() || *c == 'T').take(15).collect();
    let host: String = hostname
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .take(64)
        .collect();
    let ext = if gzip { "json.gz" } else { "json" };
    dir.join(format!("{stamp}Z-{host}-{pid}-{nonce:08x}.{ext}"))
}

/// Whether `name` is a passive report's file name (what retention may remove): never a
/// temporary being written (dotfiles) nor a file of someone else's.
pub fn is_report_name(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with(".json") || name.ends_with(".json.gz")) && name.as_bytes().first().is_some_and(u8::is_ascii_digit)
}

/// Which reports the retention limits remove, given every report's name and modification time:
/// those older than `keep_for`, then the oldest beyond `keep`.
pub fn expired(mut reports: Vec<(String, SystemTime)>, keep: Option<usize>, keep_for: Option<Duration>, now: SystemTime) -> Vec<String> {
    reports.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0))); // newest first
    let mut gone = Vec::new();
    let mut kept = 0usize;
    for (name, modified) in reports {
        let too_old = keep_for.is_some_and(|limit| now.duration_since(modified).is_ok_and(|age| age > limit));
        let too_many = keep.is_some_and(|limit| kept >= limit);
        if too_old || too_many {
            gone.push(name);
        } else {
            kept += 1;
        }
    }
    gone
}

/// What a command line says about the evaluation it asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandLine {
    /// The command, e.g. `nix build`, `nix flake check`, `nix-instantiate`.
    pub command: String,
    /// Installables, attribute paths (`-A`), files or `--expr`, as given.
    pub entry_points: Vec<String>,
}

impl CommandLine {
    /// The name of the report's one entry node: the entry points, or the command when the
    /// command line names none (`nix flake check` evaluates the flake in `.`).
    pub fn entry_label(&self) -> String {
        if self.entry_points.is_empty() {
            self.command.clone()
        } else {
            self.entry_points.join(" ")
        }
    }
}

/// Options of Nix's command lines that take values, with how many. Any other `--name` is
/// treated as a flag; Nix's settings given as options (`--max-jobs 4`) are the exception
/// handled by [`SETTING_OPTIONS`].
const VALUE_OPTIONS: &[(&str, usize)] = &[
    ("--option", 2),
    ("--arg", 2),
    ("--argstr", 2),
    ("--arg-from-file", 2),
    ("--arg-from-stdin", 1),
    ("--override-input", 2),
    ("--override-flake", 2),
    ("--update-input", 1),
    ("--redirect", 2),
    ("--inputs-from", 1),
    ("--reference-lock-file", 1),
    ("--output-lock-file", 1),
    ("--commit-lock-file-summary", 1),
    ("--file", 1),
    ("-f", 1),
    ("--include", 1),
    ("-I", 1),
    ("--apply", 1),
    ("--out-link", 1),
    ("-o", 1),
    ("--profile", 1),
    ("-p", 1),
    ("--store", 1),
    ("--eval-store", 1),
    ("--log-format", 1),
    ("--priority", 1),
    ("--write-to", 1),
    ("--template", 1),
    ("-t", 1),
    ("--keep", 1),
    ("-k", 1),
    ("--unset", 1),
    ("-u", 1),
    ("--phase", 1),
    ("--system", 1),
    ("--out-path", 1),
    ("--add-root", 1),
    ("--attr", 1),
    ("-A", 1),
    ("--expr", 1),
    ("-E", 1),
    ("--run", 1),
    ("--from-profile", 1),
    ("--to", 1),
    ("--from", 1),
];

/// Nix settings often given as options with a value (`nix build --max-jobs 4`).
const SETTING_OPTIONS: &[&str] = &[
    "--max-jobs",
    "-j",
    "--cores",
    "--builders",
    "--substituters",
    "--extra-substituters",
    "--trusted-public-keys",
    "--extra-experimental-features",
    "--experimental-features",
    "--max-call-depth",
    "--plugin-files",
    "--extra-plugin-files",
    "--nix-path",
    "--system-features",
    "--extra-system-features",
    "--timeout",
    "--max-silent-time",
    "--eval-cores",
];

/// Words that name a subcommand group of `nix` (`nix flake check`): the next word is the
/// subcommand.
const NIX_COMMAND_GROUPS: &[&str] =
    &["flake", "profile", "store", "derivation", "registry", "nar", "hash", "key", "config", "realisation", "daemon", "doctor", "formatter"];

fn value_count(arg: &str) -> usize {
    if arg.contains('=') && arg.starts_with("--") {
        return 0; // `--name=value`
    }
    VALUE_OPTIONS
        .iter()
        .find(|(name, _)| *name == arg)
        .map(|(_, n)| *n)
        .or_else(|| SETTING_OPTIONS.contains(&arg).then_some(1))
        .unwrap_or(0)
}

/// Reads `argv` the way Nix's own commands would for the options in common use.
pub fn command_line(argv: &[String]) -> CommandLine {
    let program = argv.first().map(|p| Path::new(p).file_name().map_or(p.clone(), |n| n.to_string_lossy().into_owned())).unwrap_or_default();
    let mut positional = Vec::new();
    let mut attrs = Vec::new();
    let mut expr = false;
    let mut i = 1;
    while i < argv.len() {
        let arg = &argv[i];
        if arg == "--" {
            positional.extend(argv[i + 1..].iter().cloned());
            break;
        }
        // `nix shell … --command CMD ARGS…` and `nix develop -c …`: the rest is the command's.
        if (arg == "--command" || arg == "-c") && program == "nix" {
            break;
        }
        if arg.starts_with('-') && arg.len() > 1 {
            let n = value_count(arg);
            match arg.as_str() {
                "-A" | "--attr" => attrs.extend(argv.get(i + 1).cloned()),
                "--expr" | "-E" => expr = true,
                _ => {}
            }
            i += 1 + n;
            continue;
        }
        positional.push(arg.clone());
        i += 1;
    }
    if program == "nix" {
        let mut words = vec!["nix".to_string()];
        let mut rest = positional.into_iter();
        if let Some(first) = rest.next() {
            let group = NIX_COMMAND_GROUPS.contains(&first.as_str());
            words.push(first);
            if group {
                words.extend(rest.next());
            }
        }
        let mut entry_points: Vec<String> = rest.collect();
        if expr {
            entry_points.insert(0, "«expr»".into());
        }
        return CommandLine { command: words.join(" "), entry_points };
    }
    // nix-build, nix-instantiate, nix-shell, nix-env: attribute paths name what is evaluated;
    // without them, the files (or the expression).
    let mut entry_points = if !attrs.is_empty() {
        attrs
    } else if expr {
        vec!["«expr»".into()]
    } else {
        positional
    };
    if program == "nix-env" {
        entry_points.retain(|e| !e.is_empty());
    }
    CommandLine { command: program, entry_points }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    fn raw(values: [&str; 5]) -> RawSettings {
        values.map(str::to_string)
    }

    #[test]
    fn off_without_a_directory() {
        assert_eq!(resolve(&raw(DEFAULTS), |_| None), Ok(None));
    }

    #[test]
    fn the_environment_overrides_nix_conf() {
        let nix = raw(["/var/nix", "0.5", "false", "10", "0"]);
        let env = |v: &str| (v == "NIX_EVALCOST_SAMPLE_RATE").then(|| "0.25".to_string());
        let config = resolve(&nix, env).unwrap().unwrap();
        assert_eq!(config.dir, PathBuf::from("/var/nix"));
        assert_eq!(config.sample_rate, 0.25);
        assert_eq!(config.keep, Some(10));
        assert_eq!(config.keep_for, None);
        // The environment can switch it off for one command.
        let off = |v: &str| (v == "NIX_EVALCOST_DIR").then(String::new);
        assert_eq!(resolve(&nix, off), Ok(None));
    }

    #[test]
    fn invalid_values_name_the_setting() {
        let bad_rate = raw(["/d", "1.5", "false", "1", "1"]);
        assert_eq!(resolve(&bad_rate, |_| None).unwrap_err(), "evalcost-sample-rate = '1.5': expected a number between 0 and 1");
        let env = |v: &str| (v == "NIX_EVALCOST_STACKS").then(|| "maybe".to_string());
        assert_eq!(resolve(&raw(["/d", "1", "false", "1", "1"]), env).unwrap_err(), "$NIX_EVALCOST_STACKS = 'maybe': expected true or false");
        assert!(resolve(&raw(["/d", "nan", "false", "1", "1"]), |_| None).is_err());
        assert!(resolve(&raw(["/d", "1", "false", "-1", "1"]), |_| None).is_err());
    }

    #[test]
    fn sampling_edges() {
        assert!(!sampled(0.0, 0.0));
        assert!(sampled(1.0, unit_interval(u64::MAX)));
        assert!(unit_interval(u64::MAX) < 1.0);
        assert_eq!(unit_interval(0), 0.0);
    }

    #[test]
    fn report_names_sort_by_time_and_are_unique_per_process() {
        let a = report_file(Path::new("/d"), "2026-11-24T10:39:28.123Z", "ci/box 1", 42, 0xabc, false);
        assert_eq!(a, PathBuf::from("/d/20261124T103928Z-ci_box_1-42-00000abc.json"));
        assert!(is_report_name(a.file_name().unwrap().to_str().unwrap()));
        assert!(!is_report_name(".nix-evalcost-abc"));
        assert!(!is_report_name("notes.json"));
        let gz = report_file(Path::new("/d"), "2026-11-24T10:39:28Z", "h", 1, 1, true);
        assert!(gz.to_str().unwrap().ends_with(".json.gz"));
    }

    #[test]
    fn retention_removes_the_oldest_and_the_expired() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100 * 86_400);
        let day = |d: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(d * 86_400);
        let reports = vec![("a".to_string(), day(99)), ("b".to_string(), day(98)), ("c".to_string(), day(50)), ("d".to_string(), day(97))];
        let mut gone = expired(reports.clone(), Some(2), None, now);
        gone.sort();
        assert_eq!(gone, ["c", "d"]);
        assert_eq!(expired(reports.clone(), None, Some(Duration::from_secs(10 * 86_400)), now), ["c"]);
        assert!(expired(reports, None, None, now).is_empty());
    }

    #[test]
    fn entry_points_of_the_new_cli() {
        let c = command_line(&argv("nix eval --json .#packages.x86_64-linux.hello"));
        assert_eq!(c.command, "nix eval");
        assert_eq!(c.entry_points, [".#packages.x86_64-linux.hello"]);
        let c = command_line(&argv("/opt/nix/bin/nix --option plugin-files /x.so build --dry-run .#a nixpkgs#b -o out"));
        assert_eq!(c.command, "nix build");
        assert_eq!(c.entry_points, [".#a", "nixpkgs#b"]);
        let c = command_line(&argv("nix flake check --no-build"));
        assert_eq!(c.command, "nix flake check");
        assert!(c.entry_points.is_empty());
        assert_eq!(c.entry_label(), "nix flake check");
        let c = command_line(&argv("nix eval --impure --expr 1+1"));
        assert_eq!(c.entry_points, ["«expr»"]);
        let c = command_line(&argv("nix shell nixpkgs#jq --command jq --version"));
        assert_eq!(c.entry_points, ["nixpkgs#jq"]);
        let c = command_line(&argv("nix --max-jobs 4 build .#x --override-input nixpkgs path:/n"));
        assert_eq!((c.command.as_str(), c.entry_points.as_slice()), ("nix build", &[".#x".to_string()][..]));
    }

    #[test]
    fn entry_points_of_the_old_cli() {
        let c = command_line(&argv("nix-instantiate default.nix -A hello -A world --arg x 1"));
        assert_eq!(c.command, "nix-instantiate");
        assert_eq!(c.entry_points, ["hello", "world"]);
        let c = command_line(&argv("nix-build --dry-run ./release.nix"));
        assert_eq!(c.entry_points, ["./release.nix"]);
        let c = command_line(&argv("nix-instantiate --eval -E 1"));
        assert_eq!(c.entry_points, ["«expr»"]);
        assert_eq!(command_line(&[]), CommandLine::default());
    }
}
