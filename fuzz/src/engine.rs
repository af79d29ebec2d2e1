//! A mutation fuzzer without coverage feedback (the stable toolchain has no libFuzzer
//! runtime): seed inputs, stacked byte- and token-level mutations, splicing between seeds.
//! A worker process runs one target in a loop; its supervisor restarts it after a crash and
//! records what killed it. Each input is copied into a shared memory map before it runs, so
//! the input that aborted or hung the worker survives it.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest input the mutator makes.
pub const MAX_LEN: usize = 256 << 10;

/// splitmix64: small, fast and deterministic by seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Bytes that end, open or break tokens in the text formats.
const INTERESTING_BYTES: &[u8] = b"\x00\xff\x7f\x80\"'\\{}[],:\n\r\t 0-.e_";

/// Tokens every target gets besides its own: numbers at the edges of every integer and
/// float type, escapes, and structure.
pub const COMMON_TOKENS: &[&str] = &[
    "0",
    "-0",
    "-1",
    "1e308",
    "1e309",
    "-1e309",
    "1.7976931348623157e308",
    "5e-324",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "340282366920938463463374607431768211456",
    "NaN",
    "Infinity",
    "-Infinity",
    "nan",
    "inf",
    "null",
    "true",
    "false",
    "\"\"",
    "[]",
    "{}",
    "\\u0000",
    "\\ud800",
    "\\udfff",
    "\\\"",
    "\u{feff}",
    "\u{1f}",
    "\u{a0}",
    "\u{ff10}",
    "\r\n",
    "\t",
    "\"",
    "'",
    "[[[[[[[[",
    "]]]]",
    "{\"a\":",
    "\u{0}",
    "%s",
    "../",
    "/proc/self/mem",
    "/dev/zero",
];

/// One mutation step of `data` (kept within `MAX_LEN`).
fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, seeds: &[Vec<u8>], dict: &[&[u8]]) {
    let len = data.len();
    match rng.below(14) {
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = rng.next() as u8;
        }
        2 if len > 0 => {
            let i = rng.below(len);
            data[i] = INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())];
        }
        3 if len > 0 => {
            let a = rng.below(len);
            let n = 1 + rng.below((len - a).min(32));
            data.drain(a..a + n);
        }
        4 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            data.splice(at..at, bytes);
        }
        5 | 6 if !dict.is_empty() => {
            let tok = dict[rng.below(dict.len())];
            let at = rng.below(len + 1);
            data.splice(at..at, tok.iter().copied());
        }
        7 if !dict.is_empty() && len > 0 => {
            // Overwrite a run with a token (a value replaced by another).
            let tok = dict[rng.below(dict.len())];
            let a = rng.below(len);
            let n = rng.below((len - a).min(16) + 1);
            data.splice(a..a + n, tok.iter().copied());
        }
        8 if len > 0 => {
            // Copy a chunk elsewhere.
            let a = rng.below(len);
            let n = 1 + rng.below((len - a).min(256));
            let chunk = data[a..a + n].to_vec();
            let at = rng.below(len + 1);
            data.splice(at..at, chunk);
        }
        9 if len > 0 => {
            // Repeat a small chunk many times: deep nesting, long numbers, many rows.
            let a = rng.below(len);
            let n = 1 + rng.below((len - a).min(16));
            let most = if rng.chance(8) { 4000 } else { 64 };
            let times = 2 + rng.below(most);
            let chunk = data[a..a + n].to_vec();
            let rep: Vec<u8> = chunk.iter().copied().cycle().take(n * times).collect();
            data.splice(a..a, rep);
        }
        10 if !seeds.is_empty() => {
            // Splice: our prefix, another seed's suffix.
            let other = &seeds[rng.below(seeds.len())];
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        11 if len > 0 => {
            data.truncate(rng.below(len));
        }
        12 if len > 0 => {
            // Replace a run of ASCII digits with another number.
            let start = rng.below(len);
            if let Some(off) = data[start..].iter().position(u8::is_ascii_digit) {
                let a = start + off;
                let b = a + data[a..].iter().take_while(|c| c.is_ascii_digit()).count();
                let tok = COMMON_TOKENS[rng.below(16)];
                data.splice(a..b, tok.bytes());
            }
        }
        _ if len > 1 => {
            let (i, j) = (rng.below(len), rng.below(len));
            data.swap(i, j);
        }
        _ => data.push(rng.next() as u8),
    }
    data.truncate(MAX_LEN);
}

/// A seed with 1 to 8 stacked mutations (sometimes more), or now and then the seed itself.
pub fn mutate(rng: &mut Rng, seed: &[u8], seeds: &[Vec<u8>], dict: &[&[u8]]) -> Vec<u8> {
    let mut data = seed.to_vec();
    if rng.chance(64) {
        return data;
    }
    let n = if rng.chance(16) {
        8 + rng.below(32)
    } else {
        1 + rng.below(8)
    };
    for _ in 0..n {
        mutate_once(rng, &mut data, seeds, dict);
    }
    data
}

/// Layout of the shared map: status (u64: 0 while running), input length (u64), counters (execs, accepted,
/// refused, panics: u64 each), then the input bytes.
const HEADER: usize = 6 * 8;
pub const STATUS_HANG: u64 = 1;
pub const STATUS_DONE: u64 = 2;

/// The worker's state as the supervisor sees it, in a file both map.
pub struct SharedMap {
    ptr: *mut u8,
    len: usize,
}

unsafe impl Send for SharedMap {}
unsafe impl Sync for SharedMap {}

impl SharedMap {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let len = HEADER + MAX_LEN;
        f.set_len(len as u64)?;
        Self::map(&f, len)
    }

    pub fn open(path: &Path) -> std::io::Result<Self> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        Self::map(&f, HEADER + MAX_LEN)
    }

    fn map(f: &std::fs::File, len: usize) -> std::io::Result<Self> {
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh shared mapping of a file we opened read-write, of the file's size.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(SharedMap {
            ptr: ptr as *mut u8,
            len,
        })
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        assert!(i < HEADER / 8);
        // SAFETY: the header words are 8-byte aligned (page-aligned map) and in bounds.
        unsafe { &*(self.ptr.add(8 * i) as *const AtomicU64) }
    }

    pub fn status(&self) -> u64 {
        self.word(0).load(Ordering::SeqCst)
    }
    pub fn set_status(&self, s: u64) {
        self.word(0).store(s, Ordering::SeqCst)
    }
    pub fn counter(&self, i: usize) -> u64 {
        self.word(2 + i).load(Ordering::Relaxed)
    }
    pub fn bump(&self, i: usize) {
        self.word(2 + i).fetch_add(1, Ordering::Relaxed);
    }

    /// Copies the input about to run into the map.
    pub fn store_input(&self, data: &[u8]) {
        let n = data.len().min(MAX_LEN);
        // SAFETY: in bounds of the map; only this process writes the input area.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(HEADER), n) };
        self.word(1).store(n as u64, Ordering::SeqCst);
    }

    pub fn input(&self) -> Vec<u8> {
        let n = (self.word(1).load(Ordering::SeqCst) as usize).min(MAX_LEN);
        // SAFETY: in bounds of the map.
        unsafe { std::slice::from_raw_parts(self.ptr.add(HEADER), n) }.to_vec()
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: unmapping what `map` mapped.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

pub const C_EXECS: usize = 0;
pub const C_ACCEPTED: usize = 1;
pub const C_REFUSED: usize = 2;
pub const C_PANICS: usize = 3;

/// Marks the map and aborts the process when one input runs longer than `timeout`.
pub fn watchdog(map: Arc<SharedMap>, started_ms: Arc<AtomicU64>, timeout: Duration) {
    let t0 = Instant::now();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(50));
        let s = started_ms.load(Ordering::SeqCst);
        if s == 0 {
            continue;
        }
        let now = t0.elapsed().as_millis() as u64;
        if now.saturating_sub(s) > timeout.as_millis() as u64 {
            map.set_status(STATUS_HANG);
            eprintln!("ovbench-fuzz: an input ran longer than {timeout:?}: aborting the worker");
            std::process::abort();
        }
    });
}

/// Milliseconds since `t0`, never 0 (0 means "not running").
pub fn now_ms(t0: Instant) -> u64 {
    t0.elapsed().as_millis() as u64 + 1
}

/// FNV-1a, to name saved inputs.
pub fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutation_is_deterministic_by_seed_and_bounded() {
        let seeds = vec![b"{\"a\": [1, 2, 3]}".to_vec(), b"x\ty\n1\t2\n".to_vec()];
        let dict: Vec<&[u8]> = COMMON_TOKENS.iter().map(|t| t.as_bytes()).collect();
        let run = |s| {
            let mut rng = Rng::new(s);
            (0..2000)
                .map(|i| mutate(&mut rng, &seeds[i % 2], &seeds, &dict))
                .collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7));
        assert_ne!(a, run(8));
        assert!(a.iter().all(|x| x.len() <= MAX_LEN));
        // The mutations do change inputs, most of the time.
        assert!(a.iter().filter(|x| !seeds.contains(x)).count() > 1900);
    }

    #[test]
    fn the_map_carries_input_and_counters_across_processes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m");
        let a = SharedMap::create(&p).unwrap();
        let b = SharedMap::open(&p).unwrap();
        a.store_input(b"hello");
        a.bump(C_EXECS);
        a.set_status(STATUS_HANG);
        assert_eq!(b.input(), b"hello");
        assert_eq!(b.counter(C_EXECS), 1);
        assert_eq!(b.status(), STATUS_HANG);
    }
}
