//! What one report holds, for people: meta, phases, totals, errors (`nix-evalcost info`).

use crate::attrpath::{display_path, sanitize_text};
use crate::report::Report;
use crate::units::{self, plural, Unit};
use std::fmt::Write;

/// The description of `report`, read from `source` (a file name, shown as given).
pub fn render(source: &str, r: &Report) -> String {
    let mut out = String::new();
    let m = &r.meta;
    let s = |t: &str| sanitize_text(t);
    let _ = writeln!(out, "report:       {}", s(source));
    let _ = writeln!(out, "schema:       {} v{}", r.schema, r.schema_version);
    let _ = writeln!(out, "tool / nix:   {} / {}", s(&m.tool_version), s(&m.nix_version));
    let _ = writeln!(out, "mode:         {}{}", s(&m.mode), if m.complete { "" } else { " (INTERRUPTED: partial)" });
    if let Some(f) = &m.flake {
        let _ = writeln!(out, "flake:        {}", s(&f.original_ref));
        let _ = writeln!(out, "locked:       {}", s(&f.locked_url));
        let rev = f.rev.as_deref().or(f.dirty_rev.as_deref()).unwrap_or("-");
        let last_modified = f.last_modified.map_or("-".into(), |t| t.to_string());
        let nar_hash = s(f.nar_hash.as_deref().unwrap_or("-"));
        let _ = writeln!(out, "rev:          {}  narHash {nar_hash}  lastModified {last_modified}", s(rev));
    }
    let systems = if m.all_systems { "all".to_string() } else { m.systems.join(", ") };
    let _ = writeln!(out, "systems:      {}  (drvPath forced: {})", s(&systems), m.force_drv_paths);
    let _ = writeln!(out, "host / start: {} / {}", s(&m.hostname), s(&m.started_at));
    let argv: Vec<String> = m.argv.iter().map(|a| s(a)).collect();
    let _ = writeln!(out, "argv:         {}", argv.join(" "));
    let derivations = r.nodes.iter().filter(|n| n.is_derivation).count();
    let _ = writeln!(
        out,
        "nodes:        {} ({}), {}",
        r.nodes.len(),
        plural(derivations, "derivation"),
        plural(r.error_count(), "error")
    );
    if let Some(stacks) = &r.stacks {
        let _ = writeln!(
            out,
            "stacks:       {} ({}), {} distinct stacks of at most {}, {} folded into their callers",
            s(&stacks.source),
            plural(stacks.frames.len(), "frame"),
            stacks.nodes.len(),
            stacks.node_cap,
            plural(stacks.folded_calls as usize, "call")
        );
    }
    if let Some(shard) = m.shard {
        let _ = writeln!(out, "shard:        {shard} (join every shard with `nix-evalcost merge`)");
    }
    if let Some(only) = &m.only {
        let _ = writeln!(out, "only:         {} (a walk of that output alone)", s(&crate::attrpath::display_path(only)));
    }
    if !r.isolated.is_empty() {
        let _ = writeln!(out, "isolated:     {} evaluated alone (`--cost standalone|shared`)", plural(r.isolated.len(), "output"));
    }
    if !m.parts.is_empty() {
        let _ = writeln!(out, "parts:        {} processes walked it", m.parts.len());
        for part in &m.parts {
            let ended = part.ended.as_deref().map_or(String::new(), |e| format!(", {}", s(e)));
            let _ = writeln!(
                out,
                "  {:<12} {} alone, wall {}, peak RSS {}, on {}{}{ended}",
                s(&part.name),
                plural(part.nodes.len(), "node"),
                crate::units::format(part.totals.wall_ns, crate::units::Unit::Nanoseconds),
                crate::units::bytes(part.end.peak_rss_bytes),
                s(&part.hostname),
                if part.complete { "" } else { " (interrupted)" },
            );
        }
    }
    let _ = writeln!(out, "phases:");
    for p in &r.phases {
        let c = &p.cost;
        let _ = writeln!(
            out,
            "  {:<11} wall {:>9}  cpu {:>9}  {:>7} thunks  {:>7} calls  {:>10} allocated",
            s(&p.name),
            units::format(c.wall_ns, Unit::Nanoseconds),
            units::format(c.cpu_ns, Unit::Nanoseconds),
            units::count(c.thunks),
            units::count(c.function_calls),
            units::bytes(c.gc_bytes)
        );
    }
    let _ = writeln!(out, "totals:");
    for (name, value) in r.totals.fields() {
        let outside = r.unattributed.get(name).unwrap_or(0);
        let _ = writeln!(out, "  {name:<24} {value:>14}  (unattributed {outside})");
    }
    let end = &r.end;
    let _ = writeln!(
        out,
        "end:          GC heap {}, RSS {}, peak RSS {}",
        units::bytes(end.gc_heap_bytes),
        units::bytes(end.rss_bytes),
        units::bytes(end.peak_rss_bytes)
    );
    for n in r.nodes.iter().filter(|n| n.error.is_some()) {
        let first = n.error.as_deref().unwrap_or("").lines().next().unwrap_or("");
        let _ = writeln!(out, "error:        {}: {}", display_path(&n.path), s(first));
    }
    out
}
