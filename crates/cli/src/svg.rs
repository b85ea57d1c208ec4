//! Drawing flamegraph SVGs with inferno: the folded stacks come from the core
//! (`nix_evalcost_core::render::flamegraph`); only the drawing lives here, so that the core and
//! the plugin do not depend on inferno.

use inferno::flamegraph::{self, color::BasicPalette, color::Palette, Options};
use nix_evalcost_core::metric::Metric;
use nix_evalcost_core::units::Unit;

/// What the SVG says about itself.
pub struct SvgOptions {
    pub title: String,
    pub subtitle: Option<String>,
    pub metric: &'static Metric,
    pub width: usize,
}

fn inferno_options(opts: &SvgOptions) -> Options<'static> {
    let mut o = Options::default();
    o.title = opts.title.clone();
    o.subtitle = opts.subtitle.clone();
    o.count_name = match opts.metric.unit {
        Unit::Nanoseconds => "ns".into(),
        Unit::Bytes => "bytes".into(),
        Unit::Count => opts.metric.name.into(),
    };
    o.name_type = "Attribute:".into();
    o.image_width = Some(opts.width);
    o.deterministic = true;
    o.hash = true; // a name keeps its colour from one graph to the next
    o.colors = match opts.metric.unit {
        Unit::Bytes => Palette::Basic(BasicPalette::Mem),
        _ => Palette::Basic(BasicPalette::Hot),
    };
    o
}

/// The narrowest frame inferno draws by default: 0.1 px of a 1600 px graph.
pub const INVISIBLE: f64 = 0.1 / 1600.0;

/// An SVG of folded `lines`.
pub fn svg(lines: &[String], opts: &SvgOptions) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut o = inferno_options(opts);
    if lines.is_empty() {
        // inferno refuses empty input; an empty graph says so instead.
        return flamegraph::from_lines(&mut o, ["(no cost recorded) 1"], &mut out).map(|()| out);
    }
    flamegraph::from_lines(&mut o, lines.iter().map(String::as_str), &mut out)?;
    Ok(out)
}

/// A differential SVG: frames of `after` coloured red where they grew and blue where they
/// shrank relative to `before`.
pub fn diff_svg(before: &[String], after: &[String], opts: &SvgOptions) -> std::io::Result<Vec<u8>> {
    let mut diff = Vec::new();
    let join = |lines: &[String]| lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    inferno::differential::from_readers(
        inferno::differential::Options::default(),
        join(before).as_bytes(),
        join(after).as_bytes(),
        &mut diff,
    )?;
    let text = String::from_utf8_lossy(&diff).into_owned();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    svg(&lines, opts)
}

