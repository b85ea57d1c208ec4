//! Answers of the board's queries, kept until the store changes. A board is many people
//! looking at the same few pages; every query's answer is a function of the store, so it is
//! served again until the next ingest or aggregation bumps the generation, or for [`TTL`] at
//! most (answers about "the last 7 days" move with the clock). Bounded: past `capacity`
//! answers, all are dropped (the next requests refill it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TTL: Duration = Duration::from_secs(5);

pub struct Answers {
    generation: Arc<AtomicU64>,
    capacity: usize,
    entries: Mutex<HashMap<String, Entry>>,
}

/// One answer: the generation it was computed for, when, and the answer.
struct Entry {
    generation: u64,
    at: Instant,
    value: Arc<serde_json::Value>,
}

impl Answers {
    pub fn new(capacity: usize) -> Answers {
        Answers { generation: Arc::new(AtomicU64::new(0)), capacity, entries: Mutex::new(HashMap::new()) }
    }

    /// The counter writers bump when the store changes.
    pub fn generation(&self) -> Arc<AtomicU64> {
        self.generation.clone()
    }

    /// The generation now: an answer computed after reading it is valid for it.
    pub fn now(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn get(&self, key: &str) -> Option<Arc<serde_json::Value>> {
        let now = self.now();
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).filter(|e| e.generation == now && e.at.elapsed() < TTL).map(|e| e.value.clone())
    }

    pub fn put(&self, key: String, generation: u64, value: Arc<serde_json::Value>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(key, Entry { generation, at: Instant::now(), value });
    }
}
