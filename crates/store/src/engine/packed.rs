//! One evaluation's output costs as one value (schema version 3): a report's 2000 outputs are
//! one row of `costs`, not 2000 rows of `outputs`. Ingest wrote 2000 B-tree entries per
//! report, most of its time (measured); a packed value is one append. No query reads one
//! output across evaluations without their time window (that is what `daily` is for), so
//! nothing is lost by packing.
//!
//! Layout (all integers LEB128 varints; signed ones zigzag-encoded):
//! `1` (the layout's version), the number of outputs, then per output, in ascending path id:
//! the path id's difference from the previous one, its error flag (0 or 1), and one signed
//! varint per history metric (`METRICS`, in order).

use crate::record::METRICS;

const LAYOUT: u8 = 1;

/// One output's costs, its path as an id of `paths`.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedOutput {
    pub path_id: i64,
    pub error: bool,
    pub values: [i64; 8],
}

/// The packed form of `outputs` (sorted here by path id: the ids are then small deltas). A
/// path given twice keeps its first costs, as a table keyed by path would.
pub fn encode(mut outputs: Vec<PackedOutput>) -> Vec<u8> {
    outputs.sort_by_key(|o| o.path_id);
    outputs.dedup_by_key(|o| o.path_id);
    let mut out = Vec::with_capacity(8 + outputs.len() * 20);
    out.push(LAYOUT);
    put_unsigned(&mut out, outputs.len() as u64);
    let mut previous = 0i64;
    for o in &outputs {
        put_unsigned(&mut out, o.path_id.wrapping_sub(previous) as u64);
        previous = o.path_id;
        out.push(o.error as u8);
        for v in o.values {
            put_unsigned(&mut out, zigzag(v));
        }
    }
    out
}

/// The outputs of a packed value; an error names what is wrong (a store written by a newer
/// nix-evalcost, or a damaged value).
pub fn decode(bytes: &[u8]) -> Result<Vec<PackedOutput>, String> {
    let mut r = Reader { bytes, at: 0 };
    let layout = r.byte()?;
    if layout != LAYOUT {
        return Err(format!("packed output costs have layout {layout}, this nix-evalcost reads {LAYOUT}; upgrade nix-evalcost"));
    }
    let n = r.unsigned()?;
    // Each output takes at least 10 bytes: a length beyond that is damage, not a reason to
    // reserve gigabytes.
    if n > (bytes.len() as u64) / (2 + METRICS.len() as u64) + 1 {
        return Err(format!("packed output costs claim {n} outputs in {} bytes: the value is damaged", bytes.len()));
    }
    let mut outputs = Vec::with_capacity(n as usize);
    let mut path_id = 0i64;
    for _ in 0..n {
        path_id = path_id.wrapping_add(r.unsigned()? as i64);
        let error = match r.byte()? {
            0 => false,
            1 => true,
            other => return Err(format!("packed output costs have an error flag of {other}: the value is damaged")),
        };
        let mut values = [0i64; 8];
        for v in values.iter_mut() {
            *v = unzigzag(r.unsigned()?);
        }
        outputs.push(PackedOutput { path_id, error, values });
    }
    if r.at != bytes.len() {
        return Err(format!("packed output costs have {} bytes after their last output: the value is damaged", bytes.len() - r.at));
    }
    Ok(outputs)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

pub fn put_signed(out: &mut Vec<u8>, v: i64) {
    put_unsigned(out, zigzag(v));
}

pub fn put_unsigned(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads varints and bytes off a stored value; every error says the value is damaged.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, at: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let slice = self.bytes.get(self.at..self.at + n).ok_or("a stored value ends early: it is damaged")?;
        self.at += n;
        Ok(slice)
    }

    pub fn signed(&mut self) -> Result<i64, String> {
        Ok(unzigzag(self.unsigned()?))
    }

    pub fn byte(&mut self) -> Result<u8, String> {
        let b = *self.bytes.get(self.at).ok_or("packed output costs end early: the value is damaged")?;
        self.at += 1;
        Ok(b)
    }

    pub fn unsigned(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("packed output costs hold a varint longer than 64 bits: the value is damaged".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(path_id: i64, error: bool, base: i64) -> PackedOutput {
        PackedOutput { path_id, error, values: std::array::from_fn(|i| base * (i as i64 + 1)) }
    }

    #[test]
    fn round_trips_in_path_order_with_extreme_values() {
        let mut extreme = output(7, true, 0);
        extreme.values = [i64::MIN, i64::MAX, -1, 0, 1, 127, 128, -129];
        let outputs = vec![output(900_000, false, 12345), extreme.clone(), output(8, false, 3), output(7, false, 1)];
        let decoded = decode(&encode(outputs)).unwrap();
        assert_eq!(decoded, vec![extreme, output(8, false, 3), output(900_000, false, 12345)]);
        assert_eq!(decode(&encode(Vec::new())).unwrap(), Vec::new());
    }

    #[test]
    fn small_values_take_few_bytes() {
        // 2000 outputs with ids 1..=2000 and values under 64: 1-2 bytes of id, 1 flag, 8 values.
        let outputs: Vec<PackedOutput> = (1..=2000).map(|i| PackedOutput { path_id: i, error: false, values: [5; 8] }).collect();
        assert_eq!(encode(outputs).len(), 1 + 2 + 2000 * 10);
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        let good = encode(vec![output(1, false, 300), output(2, true, 5)]);
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "a value cut to {cut} bytes");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(decode(&longer).unwrap_err().contains("after their last output"));
        assert!(decode(&[2, 0]).unwrap_err().contains("upgrade"));
        assert!(decode(&[1, 0xff, 0xff, 0xff, 0xff, 0x0f]).unwrap_err().contains("damaged"));
        assert!(decode(&[1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]).is_err());
        let mut flag = good;
        flag[3] = 9;
        assert!(decode(&flag).is_err());
    }
}
