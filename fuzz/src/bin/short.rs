//! Stable-toolchain fallback fuzzer: bounded, seeded mutation fuzzing (not coverage guided) of one target.
//! Starts from the seed files, applies random byte- and token-level mutations (flips, inserts, deletes,
//! splices between seeds, JSON/YAML tokens, deep nesting, long runs) and calls the target on each input
//! under `catch_unwind`. A panicking input is written to `fuzz/artifacts/TARGET/crash-N` and the run exits 1.
//!
//! usage: short TARGET SECONDS SEEDS_DIR [RNG_SEED]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"null",
    b"true",
    b"-1",
    b"1e999",
    b"\\u0000",
    b"\\ud800",
    b"\xff",
    b"\xc3\x28",
    b"\"message\"",
    b"\"data\"",
    b"\"messageId\"",
    b"\"protoPayload\"",
    b"\"bindingDeltas\"",
    b"\"REMOVE\"",
    b"\"roles/owner\"",
    b"\"serviceAccount:\"",
    b"projects/",
    b"folders/",
    b"organizations/",
    b"\n  - ",
    b": ",
    b"&a ",
    b"*a",
    b"!!binary ",
    b"<<: ",
    b"---\n",
    b"\t",
    b"=",
    b"==",
    b"e30=",
    b"\"sweep\"",
    b"\"asset\"",
    b"\"recommenderSubtype\"",
    b"%2F",
];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    for _ in 0..=rng.below(4) {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            2 if len > 0 => {
                let i = rng.below(len);
                let n = rng.below((len - i).min(64)) + 1;
                input.drain(i..i + n);
            }
            3 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                let i = rng.below(len + 1);
                input.splice(i..i, t.iter().copied());
            }
            4 if len > 0 => {
                // Duplicate a chunk.
                let i = rng.below(len);
                let n = rng.below((len - i).min(256)) + 1;
                let chunk = input[i..i + n].to_vec();
                let j = rng.below(input.len() + 1);
                input.splice(j..j, chunk);
            }
            5 if !seeds.is_empty() => {
                // Splice with another seed.
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = a + rng.below(other.len() - a) + 1;
                    let i = rng.below(len + 1);
                    input.truncate(i);
                    input.extend_from_slice(&other[a..b]);
                }
            }
            6 => {
                // Deep nesting.
                let depth = 1 + rng.below(200);
                let open = if rng.below(2) == 0 { b'[' } else { b'{' };
                let i = rng.below(len + 1);
                input.splice(i..i, std::iter::repeat_n(open, depth));
            }
            7 if len > 0 => {
                let i = rng.below(len);
                input.truncate(i);
            }
            _ => {
                let n = rng.below(64);
                let i = rng.below(len + 1);
                let b = rng.next() as u8;
                input.splice(i..i, std::iter::repeat_n(b, n));
            }
        }
    }
    input.truncate(256 * 1024);
}

fn read_seeds(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.iter().filter_map(|f| std::fs::read(f).ok()).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!(
            "usage: short TARGET SECONDS SEEDS_DIR [RNG_SEED]; targets: {:?}",
            gke_iam_remediator_fuzz::TARGETS
        );
        std::process::exit(2);
    }
    let Some(target) = gke_iam_remediator_fuzz::target(&args[1]) else {
        eprintln!(
            "unknown target {}; targets: {:?}",
            args[1],
            gke_iam_remediator_fuzz::TARGETS
        );
        std::process::exit(2);
    };
    let secs: u64 = args[2].parse().expect("SECONDS");
    let mut seeds = read_seeds(Path::new(&args[3]));
    if seeds.is_empty() {
        seeds.push(b"{}".to_vec());
    }
    let rng_seed: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    }) | 1;
    let mut rng = Rng(rng_seed);
    std::panic::set_hook(Box::new(|_| {}));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut runs: u64 = 0;
    for (i, s) in seeds.iter().enumerate() {
        if std::panic::catch_unwind(|| target(s)).is_err() {
            eprintln!("{}: PANIC on seed #{i} of {}", args[1], args[3]);
            std::process::exit(1);
        }
    }
    while Instant::now() < deadline {
        let mut input = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &mut input, &seeds);
        let result = std::panic::catch_unwind(|| target(&input));
        runs += 1;
        if result.is_err() {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("artifacts")
                .join(&args[1]);
            let _ = std::fs::create_dir_all(&dir);
            let path = dir.join(format!("crash-{rng_seed}-{runs}"));
            let _ = std::fs::write(&path, &input);
            eprintln!(
                "{}: PANIC on input saved to {} (rng seed {rng_seed})",
                args[1],
                path.display()
            );
            std::process::exit(1);
        }
    }
    println!(
        "{}: {runs} inputs in {secs} s from {} seeds, no panic (rng seed {rng_seed})",
        args[1],
        seeds.len()
    );
}
