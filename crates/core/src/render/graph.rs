//! `nix-evalcost graph`: the walked flake-output tree of one report, printed the way
//! `nix flake show` prints it, with inclusive and exclusive cost and share of the total.
//! Formats: text (Unicode tree, ASCII fallback), json (nested), dot (Graphviz).

use crate::attrpath::{display_path, escape_quoted as dot_escape, sanitize_text};
use crate::cost::{Cost, Gauges};
use crate::metric::Metric;
use crate::report::{Kind, Report};
use crate::units;
use serde::Serialize;
use std::fmt::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphFormat {
    Text,
    Json,
    Dot,
}

impl GraphFormat {
    pub const ALL: [GraphFormat; 3] = [GraphFormat::Text, GraphFormat::Json, GraphFormat::Dot];

    pub fn name(self) -> &'static str {
        match self {
            GraphFormat::Text => "text",
            GraphFormat::Json => "json",
            GraphFormat::Dot => "dot",
        }
    }
}

pub struct GraphOptions {
    pub metric: &'static Metric,
    /// Deepest level shown (1: top-level outputs); deeper costs stay in their ancestors' inclusive.
    pub depth: Option<usize>,
    /// Children whose inclusive share of the total is below this fraction are folded into one line.
    pub min_share: f64,
    pub ascii: bool,
}

/// The tree with inclusive costs, shared by the three formats.
struct Tree<'a> {
    report: &'a Report,
    inclusive: Vec<Cost>,
    children: Vec<Vec<usize>>,
    roots: Vec<usize>,
    total: u64,
    opts: &'a GraphOptions,
}

/// One line of the tree: a node, or the siblings folded together.
enum Item {
    Node(usize),
    Folded { count: usize, inclusive: u64 },
}

impl<'a> Tree<'a> {
    fn new(report: &'a Report, opts: &'a GraphOptions) -> Tree<'a> {
        let mut children = vec![Vec::new(); report.nodes.len()];
        let mut roots = Vec::new();
        for n in &report.nodes {
            match n.parent {
                Some(p) => children[p as usize].push(n.id as usize),
                None => roots.push(n.id as usize),
            }
        }
        let inclusive = report.inclusive_costs();
        let total = opts.metric.value(&report.totals, &report.end, &report.sizes);
        Tree { report, inclusive, children, roots, total, opts }
    }

    fn value(&self, cost: &Cost, after: &Gauges) -> u64 {
        self.opts.metric.value(cost, after, &self.report.sizes)
    }
    fn incl(&self, i: usize) -> u64 {
        self.value(&self.inclusive[i], &self.report.nodes[i].after)
    }
    fn excl(&self, i: usize) -> u64 {
        self.value(&self.report.nodes[i].cost, &self.report.nodes[i].after)
    }
    fn share(&self, v: u64) -> f64 {
        if self.total == 0 { 0.0 } else { v as f64 / self.total as f64 }
    }

    /// The items to show among `nodes` at `depth` (1-based), folding the cheap ones.
    fn items(&self, nodes: &[usize], depth: usize) -> Vec<Item> {
        if self.opts.depth.is_some_and(|d| depth > d) {
            return Vec::new();
        }
        let (mut shown, mut folded, mut folded_value) = (Vec::new(), 0, 0u64);
        for &i in nodes {
            let cheap = self.opts.metric.is_additive() && self.share(self.incl(i)) < self.opts.min_share;
            if cheap && self.report.nodes[i].error.is_none() {
                folded += 1;
                folded_value += self.incl(i);
            } else {
                shown.push(Item::Node(i));
            }
        }
        if folded > 0 {
            shown.push(Item::Folded { count: folded, inclusive: folded_value });
        }
        shown
    }

    fn label(&self, i: usize) -> String {
        let n = &self.report.nodes[i];
        let name = display_path(std::slice::from_ref(n.path.last().expect("nodes have a name")));
        match n.kind {
            Kind::Attrset => name,
            kind => format!("{name}: {}", kind.name()),
        }
    }
}

pub fn render(report: &Report, format: GraphFormat, opts: &GraphOptions) -> String {
    let tree = Tree::new(report, opts);
    match format {
        GraphFormat::Text => text(&tree),
        GraphFormat::Json => json(&tree),
        GraphFormat::Dot => dot(&tree),
    }
}

// ---- text ----------------------------------------------------------------------------------

struct Glyphs {
    branch: &'static str,
    last: &'static str,
    pipe: &'static str,
    space: &'static str,
    error: &'static str,
    more: &'static str,
}

const UNICODE: Glyphs = Glyphs { branch: "├───", last: "└───", pipe: "│   ", space: "    ", error: "✗", more: "…" };
const ASCII: Glyphs = Glyphs { branch: "|---", last: "`---", pipe: "|   ", space: "    ", error: "x", more: "..." };

/// One line of the text tree: the label, the cost columns (none for the header line), the error.
struct TextLine {
    label: String,
    columns: Option<[String; 3]>,
    error: Option<String>,
}

fn text(tree: &Tree) -> String {
    let g = if tree.opts.ascii { &ASCII } else { &UNICODE };
    let flake = tree.report.meta.flake.as_ref().map_or_else(|| "(measure)".to_string(), |f| f.original_ref.clone());
    let mut lines = vec![TextLine { label: sanitize_text(&flake), columns: None, error: None }];
    text_items(tree, &tree.roots, 1, String::new(), g, &mut lines);
    let unit = tree.opts.metric.unit;
    let left = lines.iter().map(|l| l.label.chars().count()).max().unwrap_or(0).min(80);
    let mut out = String::new();
    let _ = writeln!(out, "{:left$}  {:>10}  {:>10}  {:>6}", "", format!("{} incl", tree.opts.metric.name), "excl", "share");
    for TextLine { label, columns, error } in lines {
        let label = cut(&label, left, g);
        match columns {
            Some([incl, excl, share]) => {
                let _ = write!(out, "{label:left$}  {incl:>10}  {excl:>10}  {share:>6}");
            }
            None => {
                let _ = write!(out, "{label:left$}  {:>10}", units::format(tree.total, unit));
            }
        }
        if let Some(e) = error {
            let _ = write!(out, "  {} {}", g.error, cut(&e, 100, g));
        }
        out = out.trim_end().to_string();
        out.push('\n');
    }
    if tree.opts.ascii {
        out = out.replace('µ', "u"); // µs
    }
    out
}

fn text_items(
    tree: &Tree,
    nodes: &[usize],
    depth: usize,
    prefix: String,
    g: &Glyphs,
    lines: &mut Vec<TextLine>,
) {
    let unit = tree.opts.metric.unit;
    let items = tree.items(nodes, depth);
    let count = items.len();
    for (k, item) in items.into_iter().enumerate() {
        let last = k + 1 == count;
        let head = format!("{prefix}{}", if last { g.last } else { g.branch });
        match item {
            Item::Node(i) => {
                let incl = tree.incl(i);
                let cols = [units::format(incl, unit), units::format(tree.excl(i), unit), format!("{:.1}%", tree.share(incl) * 100.0)];
                let error = tree.report.nodes[i].error.as_deref().map(|e| sanitize_text(e.lines().next().unwrap_or("")));
                lines.push(TextLine { label: format!("{head}{}", tree.label(i)), columns: Some(cols), error });
                let next = format!("{prefix}{}", if last { g.space } else { g.pipe });
                text_items(tree, &tree.children[i], depth + 1, next, g, lines);
            }
            Item::Folded { count, inclusive } => {
                let cols = [units::format(inclusive, unit), String::new(), format!("{:.1}%", tree.share(inclusive) * 100.0)];
                lines.push(TextLine { label: format!("{head}{} {count} more", g.more), columns: Some(cols), error: None });
            }
        }
    }
}

fn cut(text: &str, width: usize, g: &Glyphs) -> String {
    super::cut(text, width, g.more)
}

// ---- json ----------------------------------------------------------------------------------

#[derive(Serialize)]
struct JsonNode<'a> {
    name: &'a str,
    path: &'a [String],
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    inclusive: u64,
    exclusive: u64,
    share: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    children: Vec<JsonItem<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum JsonItem<'a> {
    Node(Box<JsonNode<'a>>),
    Folded { folded: usize, inclusive: u64, share: f64 },
}

fn json_items<'a>(tree: &'a Tree, nodes: &[usize], depth: usize) -> Vec<JsonItem<'a>> {
    tree.items(nodes, depth)
        .into_iter()
        .map(|item| match item {
            Item::Node(i) => {
                let n = &tree.report.nodes[i];
                JsonItem::Node(Box::new(JsonNode {
                    name: n.path.last().map_or("", String::as_str),
                    path: &n.path,
                    kind: n.kind.name(),
                    error: n.error.as_deref(),
                    inclusive: tree.incl(i),
                    exclusive: tree.excl(i),
                    share: tree.share(tree.incl(i)),
                    children: json_items(tree, &tree.children[i], depth + 1),
                }))
            }
            Item::Folded { count, inclusive } => JsonItem::Folded { folded: count, inclusive, share: tree.share(inclusive) },
        })
        .collect()
}

fn json(tree: &Tree) -> String {
    #[derive(Serialize)]
    struct Root<'a> {
        flake: Option<&'a str>,
        metric: &'static str,
        unit: &'static str,
        total: u64,
        children: Vec<JsonItem<'a>>,
    }
    let root = Root {
        flake: tree.report.meta.flake.as_ref().map(|f| f.original_ref.as_str()),
        metric: tree.opts.metric.name,
        unit: match tree.opts.metric.unit {
            units::Unit::Count => "count",
            units::Unit::Bytes => "bytes",
            units::Unit::Nanoseconds => "nanoseconds",
        },
        total: tree.total,
        children: json_items(tree, &tree.roots, 1),
    };
    let mut out = serde_json::to_string_pretty(&root).expect("serializing to memory");
    out.push('\n');
    out
}

// ---- dot -----------------------------------------------------------------------------------

fn dot(tree: &Tree) -> String {
    let mut out = String::from("digraph evalcost {\n  rankdir=LR;\n  node [shape=box, style=filled, fontname=\"monospace\"];\n");
    let _ = writeln!(out, "  root [label=\"{}\", fillcolor=\"#ffffff\"];", dot_escape(tree.report.meta.flake.as_ref().map_or("(measure)", |f| &f.original_ref)));
    dot_items(tree, &tree.roots, 1, "root", &mut out);
    out.push_str("}\n");
    out
}

fn dot_items(tree: &Tree, nodes: &[usize], depth: usize, parent: &str, out: &mut String) {
    let unit = tree.opts.metric.unit;
    for item in tree.items(nodes, depth) {
        let (id, label, share, error) = match item {
            Item::Node(i) => {
                let incl = tree.incl(i);
                let label = format!("{}\\n{}", dot_escape(&tree.label(i)), units::format(incl, unit));
                (format!("n{i}"), label, tree.share(incl), tree.report.nodes[i].error.is_some())
            }
            Item::Folded { count, inclusive } => {
                (format!("{parent}_more"), format!("… {count} more\\n{}", units::format(inclusive, unit)), tree.share(inclusive), false)
            }
        };
        // White to red by share of the total; the box grows with it too.
        let heat = (255.0 * (1.0 - share.clamp(0.0, 1.0).sqrt())) as u8;
        let color = if error { "#ff4040".to_string() } else { format!("#ff{heat:02x}{heat:02x}") };
        let _ = writeln!(out, "  {id} [label=\"{label}\", fillcolor=\"{color}\", fontsize={:.0}];", 10.0 + 14.0 * share.sqrt());
        let _ = writeln!(out, "  {parent} -> {id};");
        if let Item::Node(i) = item {
            dot_items(tree, &tree.children[i], depth + 1, &id, out);
        }
    }
}
