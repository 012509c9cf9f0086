//! A seeded generator of log lines in the reference's format (docs/spec.md sections 1 and 6).
//!
//! Lines come in random time order over the chosen days, from `cust_1..cust_N`, with the
//! reference's paths, statuses and 3-decimal durations. The same settings and seed always give the
//! same bytes. It formats into a large buffer by hand: it feeds the benchmarks at millions of lines/s.

use std::io::{self, Write};

use crate::day::Day;

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateConfig {
    pub lines: u64,
    pub customers: u32,
    pub days: u32,
    /// The last day of the generated range (inclusive).
    pub end: Day,
    pub seed: u64,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig {
            lines: 10_000,
            customers: 50,
            days: 30,
            end: Day::from_ymd(2024, 10, 2).expect("a valid date"),
            seed: 42,
        }
    }
}

const STATUSES: [&[u8; 3]; 7] = [b"200", b"201", b"400", b"401", b"403", b"404", b"500"];
const PATHS: [&[u8]; 4] = [
    b"/api/v1/resource1",
    b"/api/v1/resource2",
    b"/api/v1/resource3",
    b"/api/v1/resource4",
];
const MIN_DURATION_MS: u64 = 100;
const MAX_DURATION_MS: u64 = 2000;
const BUFFER_BYTES: usize = 1 << 20;

/// Writes `config.lines` lines to `out`.
/// Publishes a generated log to a stream (created when missing), in messages of whole lines;
/// returns how many messages.
pub fn publish(config: &GenerateConfig, url: &crate::nats::StreamUrl) -> anyhow::Result<u64> {
    let mut publisher = crate::nats::LinePublisher::open(url, "generated")?;
    generate(config, &mut publisher)?;
    Ok(publisher.finish()?)
}

pub fn generate(config: &GenerateConfig, out: &mut impl Write) -> io::Result<()> {
    let customers = config.customers.max(1);
    let days = config.days.max(1);
    let first = config.end.plus(1 - days as i32);
    let dates: Vec<String> = (0..days)
        .map(|i| first.plus(i as i32).to_string())
        .collect();
    let names: Vec<String> = (1..=customers).map(|i| format!("cust_{i}")).collect();
    let mut random = SplitMix64(config.seed);
    let mut buffer = Vec::with_capacity(BUFFER_BYTES + 256);
    for _ in 0..config.lines {
        let day = random.below(u64::from(days)) as usize;
        let second = random.below(86_400) as u32;
        buffer.extend_from_slice(dates[day].as_bytes());
        buffer.push(b' ');
        push_two_digits(&mut buffer, second / 3600);
        buffer.push(b':');
        push_two_digits(&mut buffer, second / 60 % 60);
        buffer.push(b':');
        push_two_digits(&mut buffer, second % 60);
        buffer.push(b' ');
        buffer.extend_from_slice(names[random.below(u64::from(customers)) as usize].as_bytes());
        buffer.push(b' ');
        buffer.extend_from_slice(PATHS[random.below(PATHS.len() as u64) as usize]);
        buffer.push(b' ');
        buffer.extend_from_slice(STATUSES[random.below(STATUSES.len() as u64) as usize]);
        buffer.push(b' ');
        let millis = MIN_DURATION_MS + random.below(MAX_DURATION_MS - MIN_DURATION_MS + 1);
        buffer.push(b'0' + (millis / 1000) as u8);
        buffer.push(b'.');
        let fraction = (millis % 1000) as u32;
        buffer.push(b'0' + (fraction / 100) as u8);
        push_two_digits(&mut buffer, fraction % 100);
        buffer.push(b'\n');
        if buffer.len() >= BUFFER_BYTES {
            out.write_all(&buffer)?;
            buffer.clear();
        }
    }
    out.write_all(&buffer)?;
    out.flush()
}

fn push_two_digits(buffer: &mut Vec<u8>, value: u32) {
    buffer.push(b'0' + (value / 10) as u8);
    buffer.push(b'0' + (value % 10) as u8);
}

/// SplitMix64: tiny, fast and good enough for test data; stable across platforms and versions.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (Lemire's multiply-shift; the bias is negligible for these bounds).
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(bound)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::parse_line;

    fn generated(config: &GenerateConfig) -> Vec<u8> {
        let mut out = Vec::new();
        generate(config, &mut out).unwrap();
        out
    }

    #[test]
    fn every_generated_line_parses_within_the_chosen_range() {
        let config = GenerateConfig {
            lines: 20_000,
            customers: 7,
            days: 3,
            ..Default::default()
        };
        let out = generated(&config);
        let lines: Vec<&[u8]> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 20_000);
        let mut customers = std::collections::HashSet::new();
        for line in lines {
            let request = parse_line(line).unwrap().unwrap();
            assert!(request.day <= config.end && request.day >= config.end.plus(-2));
            assert!((100_000..=2_000_000).contains(&request.duration_us));
            assert_eq!(request.duration_us % 1000, 0);
            customers.insert(request.customer.to_string());
        }
        assert_eq!(customers.len(), 7);
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes_and_another_seed_does_not() {
        let config = GenerateConfig {
            lines: 1000,
            ..Default::default()
        };
        assert_eq!(generated(&config), generated(&config));
        assert_ne!(
            generated(&config),
            generated(&GenerateConfig { seed: 7, ..config })
        );
    }
}
