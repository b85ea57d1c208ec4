//! Exclusive-cost accounting: who pays for the work done between two readings.
//!
//! At every transition (a node is entered or left) the ledger takes the difference between the
//! new cumulative reading and the previous one and charges it to the innermost open node, or to
//! the unattributed bucket when none is open. Every unit of every counter is charged exactly
//! once, so conservation holds by construction:
//! `sum(node costs) + unattributed == last reading`.

use crate::cost::Cost;

/// Index of a node in the ledger (and in the report's node list).
pub type NodeIndex = usize;

#[derive(Debug, Clone)]
pub struct Ledger {
    last: Cost,
    open: Vec<NodeIndex>,
    charged: Vec<Cost>,
    unattributed: Cost,
}

impl Ledger {
    /// Starts accounting at the cumulative reading `start`; everything before it (process
    /// start-up, anything evaluated before the plugin was asked) is unattributed.
    pub fn new(start: Cost) -> Self {
        Ledger { last: start, open: Vec::new(), charged: Vec::new(), unattributed: start }
    }

    /// Registers a node that will be charged; returns its index.
    pub fn add_node(&mut self) -> NodeIndex {
        self.charged.push(Cost::default());
        self.charged.len() - 1
    }

    /// Charges the work since the previous reading to whoever is innermost.
    pub fn checkpoint(&mut self, now: Cost) {
        let delta = now.since(&self.last);
        match self.open.last() {
            Some(&node) => self.charged[node].add(&delta),
            None => self.unattributed.add(&delta),
        }
        self.last = now;
    }

    /// Opens `node`: from now on it is charged. A node may be open more than once (recursion).
    pub fn enter(&mut self, node: NodeIndex, now: Cost) {
        assert!(node < self.charged.len(), "node {node} was never added");
        self.checkpoint(now);
        self.open.push(node);
    }

    /// Closes the innermost opening of `node`, and any node opened inside it that was never
    /// closed (an exception skipped its exit). Returns false if `node` was not open.
    pub fn exit(&mut self, node: NodeIndex, now: Cost) -> bool {
        self.checkpoint(now);
        match self.open.iter().rposition(|&n| n == node) {
            Some(pos) => {
                self.open.truncate(pos);
                true
            }
            None => false,
        }
    }

    /// Closes every open node (an interrupted walk).
    pub fn close_all(&mut self, now: Cost) {
        self.checkpoint(now);
        self.open.clear();
    }

    #[cfg(test)]
    fn is_open(&self, node: NodeIndex) -> bool {
        self.open.contains(&node)
    }

    /// The open nodes, outermost first (a node open twice, in recursion, is listed twice).
    pub fn open_nodes(&self) -> &[NodeIndex] {
        &self.open
    }

    /// The innermost open node.
    pub fn innermost(&self) -> Option<NodeIndex> {
        self.open.last().copied()
    }

    /// Exclusive cost charged to `node` so far.
    pub fn charged(&self, node: NodeIndex) -> &Cost {
        &self.charged[node]
    }

    pub fn unattributed(&self) -> &Cost {
        &self.unattributed
    }

    /// The cumulative reading at the last checkpoint: the process totals.
    pub fn totals(&self) -> &Cost {
        &self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(thunks: u64, wall_ns: u64) -> Cost {
        Cost { thunks, wall_ns, ..Cost::default() }
    }

    fn sum_all(l: &Ledger, n: usize) -> Cost {
        let mut s = *l.unattributed();
        for i in 0..n {
            s.add(l.charged(i));
        }
        s
    }

    #[test]
    fn nested_nodes_get_exclusive_cost() {
        let mut l = Ledger::new(at(5, 0));
        let a = l.add_node();
        let b = l.add_node();
        l.enter(a, at(7, 1)); // 2 thunks before a: unattributed
        l.enter(b, at(10, 2)); // 3 in a
        l.exit(b, at(20, 4)); // 10 in b
        l.exit(a, at(21, 5)); // 1 more in a
        l.checkpoint(at(30, 6)); // 9 after: unattributed
        assert_eq!(l.charged(a).thunks, 4);
        assert_eq!(l.charged(b).thunks, 10);
        assert_eq!(l.unattributed().thunks, 5 + 2 + 9);
        assert_eq!(sum_all(&l, 2), *l.totals());
    }

    #[test]
    fn exit_closes_nodes_left_open_by_an_exception() {
        let mut l = Ledger::new(Cost::default());
        let a = l.add_node();
        let b = l.add_node();
        l.enter(a, at(1, 0));
        l.enter(b, at(2, 0));
        assert!(l.exit(a, at(4, 0)));
        assert!(!l.is_open(b));
        assert_eq!(l.innermost(), None);
        assert_eq!(l.charged(b).thunks, 2);
        assert!(!l.exit(b, at(4, 0)));
    }

    #[test]
    fn recursion_reenters_the_same_node() {
        let mut l = Ledger::new(Cost::default());
        let a = l.add_node();
        l.enter(a, at(0, 0));
        l.enter(a, at(3, 0));
        l.exit(a, at(5, 0));
        assert!(l.is_open(a));
        l.exit(a, at(6, 0));
        assert_eq!(l.charged(a).thunks, 6);
    }

    #[test]
    fn conservation_holds_for_any_sequence() {
        // A deterministic pseudo-random walk of enters, exits and checkpoints.
        let mut seed = 0x2545F4914F6CDD1Du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut l = Ledger::new(at(3, 3));
        let nodes: Vec<_> = (0..20).map(|_| l.add_node()).collect();
        let mut now = at(3, 3);
        for _ in 0..2000 {
            now.thunks += next() % 50;
            now.wall_ns += next() % 1000;
            now.gc_bytes += next() % 4096;
            match next() % 4 {
                0 => l.enter(nodes[(next() % 20) as usize], now),
                1 => {
                    l.exit(nodes[(next() % 20) as usize], now);
                }
                2 => l.checkpoint(now),
                _ => {
                    if let Some(n) = l.innermost() {
                        l.exit(n, now);
                    }
                }
            }
        }
        l.close_all(now);
        assert_eq!(sum_all(&l, 20), now);
    }
}
