//! `nix-evalcost info REPORT...`: what a report holds: meta, phases, totals, errors.

use super::OutputArgs;
use crate::attrpath::{display_path, sanitize_text};
use crate::report_io::read_report;
use crate::units::{self, Unit};
use std::fmt::Write;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct InfoArgs {
    #[arg(required = true)]
    reports: Vec<PathBuf>,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn run(args: InfoArgs) -> anyhow::Result<i32> {
    let mut out = String::new();
    for (k, path) in args.reports.iter().enumerate() {
        let r = read_report(path)?;
        if k > 0 {
            out.push('\n');
        }
        let m = &r.meta;
        let s = |t: &str| sanitize_text(t);
        let _ = writeln!(out, "report:       {}", s(&path.display().to_string()));
        let _ = writeln!(out, "schema:       {} v{}", r.schema, r.schema_version);
        let _ = writeln!(out, "tool / nix:   {} / {}", s(&m.tool_version), s(&m.nix_version));
        let _ = writeln!(out, "mode:         {}{}", s(&m.mode), if m.complete { "" } else { " (INTERRUPTED: partial)" });
        if let Some(f) = &m.flake {
            let _ = writeln!(out, "flake:        {}", s(&f.original_ref));
            let _ = writeln!(out, "locked:       {}", s(&f.locked_url));
            let rev = f.rev.as_deref().or(f.dirty_rev.as_deref()).unwrap_or("-");
            let _ = writeln!(out, "rev:          {}  narHash {}  lastModified {}", s(rev), s(f.nar_hash.as_deref().unwrap_or("-")), f.last_modified.map_or("-".into(), |t| t.to_string()));
        }
        let systems = if m.all_systems { "all".to_string() } else { m.systems.join(", ") };
        let _ = writeln!(out, "systems:      {}  (drvPath forced: {})", s(&systems), m.force_drv_paths);
        let _ = writeln!(out, "host / start: {} / {}", s(&m.hostname), s(&m.started_at));
        let argv: Vec<String> = m.argv.iter().map(|a| s(a)).collect();
        let _ = writeln!(out, "argv:         {}", argv.join(" "));
        let _ = writeln!(out, "nodes:        {} ({} derivations), {} errors", r.nodes.len(), r.nodes.iter().filter(|n| n.is_derivation).count(), r.error_count());
        let _ = writeln!(out, "phases:");
        for p in &r.phases {
            let c = &p.cost;
            let _ = writeln!(out, "  {:<11} wall {:>9}  cpu {:>9}  {:>7} thunks  {:>7} calls  {:>10} allocated", s(&p.name), units::format(c.wall_ns, Unit::Nanoseconds), units::format(c.cpu_ns, Unit::Nanoseconds), units::count(c.thunks), units::count(c.function_calls), units::bytes(c.gc_bytes));
        }
        let _ = writeln!(out, "totals:");
        for (name, value) in r.totals.fields() {
            let outside = r.unattributed.get(name).unwrap_or(0);
            let _ = writeln!(out, "  {name:<24} {value:>14}  (unattributed {outside})");
        }
        let _ = writeln!(out, "end:          GC heap {}, RSS {}, peak RSS {}", units::bytes(r.end.gc_heap_bytes), units::bytes(r.end.rss_bytes), units::bytes(r.end.peak_rss_bytes));
        for n in r.nodes.iter().filter(|n| n.error.is_some()) {
            let first = n.error.as_deref().unwrap_or("").lines().next().unwrap_or("");
            let _ = writeln!(out, "error:        {}: {}", display_path(&n.path), s(first));
        }
    }
    args.output.emit(&out)?;
    Ok(0)
}
