//! A request's resource (its path, normalised) and a day's [`Breakdown`] by resource
//! (docs/spec.md section 3, "By resource"). Pure: no I/O.
//!
//! The breakdown is exact and mergeable like the day itself, and bounded: a day keeps the
//! [`MOST_RESOURCES`] resources whose names sort first, every other request goes to [`OTHER`].
//! Which ones those are depends only on the set of names the day has seen, never on the order they
//! came in, so merging capped breakdowns in any grouping gives the breakdown of all the requests.

use serde::{Deserialize, Serialize};

use crate::histogram::{read_varint, write_varint};
use crate::stats::{CorruptState, DayStats};

/// The most resources a day keeps by name.
pub const MOST_RESOURCES: usize = 1000;

/// The longest resource kept by name, in bytes; a longer one counts as [`OTHER`].
pub const LONGEST_RESOURCE: usize = 255;

/// The requests of a day past its [`MOST_RESOURCES`] resources (or with a resource longer than
/// [`LONGEST_RESOURCE`]).
pub const OTHER: &str = "(other)";

/// The requests of a day recorded without their resource: stored before the breakdown existed,
/// or ingested with it switched off. The API shows them with `"resource": null`.
pub const UNATTRIBUTED: &str = "";

/// What replaces an identifier segment of a path.
const ID: &str = "{id}";

/// Writes the resource of the request path `path` to `out` (cleared first): the path without its
/// `?query` and `#fragment`, without trailing `/` (except `/` itself), with every all-digit
/// segment and every UUID segment replaced by `{id}`. Bytes that are not UTF-8 become U+FFFD.
pub fn resource_of(path: &[u8], out: &mut String) {
    out.clear();
    let end = path
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(path.len());
    let mut path = &path[..end];
    while path.len() > 1 && path.ends_with(b"/") {
        path = &path[..path.len() - 1];
    }
    let segments = || path.split(|&b| b == b'/');
    // Most paths name no identifier: they are their own resource.
    if !segments().any(is_identifier) {
        push_text(out, path);
    } else {
        for (index, segment) in segments().enumerate() {
            if index > 0 {
                out.push('/');
            }
            match is_identifier(segment) {
                true => out.push_str(ID),
                false => push_text(out, segment),
            }
        }
    }
    if out.len() > LONGEST_RESOURCE {
        out.clear();
        out.push_str(OTHER);
    }
}

/// Appends `bytes` as text, U+FFFD for what is not UTF-8.
fn push_text(out: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => out.push_str(text),
        Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
    }
}

/// An all-digit segment, or a UUID (8-4-4-4-12 hexadecimal digits, any case).
fn is_identifier(segment: &[u8]) -> bool {
    if !segment.is_empty() && segment.iter().all(u8::is_ascii_digit) {
        return true;
    }
    segment.len() == 36
        && segment.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// A day's requests by resource: each entry the exact state of its requests, ascending by name
/// ([`UNATTRIBUTED`] and [`OTHER`] sort before every path). The entries add up to the day.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breakdown {
    entries: Vec<(Box<str>, DayStats)>,
}

impl Breakdown {
    /// The breakdown of these (resource, state) entries, in any order, names repeated or not;
    /// entries without requests are left out, and the cap applies.
    pub fn of(entries: impl IntoIterator<Item = (Box<str>, DayStats)>) -> Breakdown {
        let mut entries: Vec<(Box<str>, DayStats)> = entries.into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut breakdown = Breakdown::default();
        for (name, stats) in entries {
            breakdown.push(name, stats);
        }
        breakdown.cap();
        breakdown
    }

    /// A day whose requests were all recorded without their resource.
    pub fn unattributed(day: DayStats) -> Breakdown {
        Breakdown::of([(UNATTRIBUTED.into(), day)])
    }

    /// Appends an entry whose name sorts at or after the last one's (merged with it when equal).
    fn push(&mut self, name: Box<str>, mut stats: DayStats) {
        stats.resources = None;
        if stats.total() == 0 {
            return;
        }
        match self.entries.last_mut() {
            Some((last, state)) if *last == name => state.merge(stats),
            _ => self.entries.push((name, stats)),
        }
    }

    /// The entries, ascending by name.
    pub fn entries(&self) -> &[(Box<str>, DayStats)] {
        &self.entries
    }

    /// The entries, ascending by name.
    pub fn into_entries(self) -> Vec<(Box<str>, DayStats)> {
        self.entries
    }

    /// Requests counted as [`OTHER`].
    pub fn other_requests(&self) -> u64 {
        self.entry(OTHER).map_or(0, DayStats::total)
    }

    fn entry(&self, name: &str) -> Option<&DayStats> {
        let place = self.entries.binary_search_by(|e| (*e.0).cmp(name)).ok()?;
        Some(&self.entries[place].1)
    }

    /// Adds every request of `other`.
    pub fn merge(&mut self, other: Breakdown) {
        let mine = std::mem::take(&mut self.entries);
        let mut mine = mine.into_iter().peekable();
        let mut theirs = other.entries.into_iter().peekable();
        loop {
            let next = match (mine.peek(), theirs.peek()) {
                (Some(a), Some(b)) if b.0 < a.0 => theirs.next(),
                (Some(_), _) => mine.next(),
                (None, _) => theirs.next(),
            };
            let Some((name, stats)) = next else { break };
            self.push(name, stats);
        }
        self.cap();
    }

    /// Moves the requests of every resource past the first [`MOST_RESOURCES`] into [`OTHER`].
    fn cap(&mut self) {
        let special = self
            .entries
            .iter()
            .take_while(|(name, _)| is_special(name))
            .count();
        if self.entries.len() - special <= MOST_RESOURCES {
            return;
        }
        let mut over = DayStats::default();
        for (_, stats) in self.entries.drain(special + MOST_RESOURCES..) {
            over.merge(stats);
        }
        match self.entries.binary_search_by(|e| (*e.0).cmp(OTHER)) {
            Ok(place) => self.entries[place].1.merge(over),
            Err(place) => self.entries.insert(place, (OTHER.into(), over)),
        }
    }

    /// Takes back one request of `resource` (or, when that resource is no longer kept by name, of
    /// [`OTHER`] or [`UNATTRIBUTED`]); false, and nothing changed, when none holds it.
    pub fn remove(&mut self, resource: &str, status: u16, duration_us: u64) -> bool {
        for name in [resource, OTHER, UNATTRIBUTED] {
            if let Ok(place) = self.entries.binary_search_by(|e| (*e.0).cmp(name))
                && self.entries[place].1.remove(status, duration_us)
            {
                if self.entries[place].1.total() == 0 {
                    self.entries.remove(place);
                }
                return true;
            }
        }
        false
    }

    /// Whether every request is [`UNATTRIBUTED`] (or there is none): the day has no breakdown.
    pub fn is_unattributed(&self) -> bool {
        self.entries.iter().all(|(name, _)| **name == *UNATTRIBUTED)
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * size_of::<(Box<str>, DayStats)>()
            + self
                .entries
                .iter()
                .map(|(name, stats)| name.len() + stats.heap_bytes())
                .sum::<usize>()
    }

    /// Appends the stored form (read back by [`Breakdown::decode`]). Compacts the states.
    ///
    /// [`SHARED_NAMES`], the number of entries, then each entry: how many bytes its name shares
    /// with the one before, the rest of the name (its length, its bytes), and its state as
    /// [`DayStats::encode_entry`] writes it. A day's names mostly share a long start
    /// (`/api/v1/...`), which most of a breakdown's bytes were.
    pub fn encode(&mut self, bytes: &mut Vec<u8>) {
        bytes.extend_from_slice(&SHARED_NAMES);
        write_varint(bytes, self.entries.len() as u64);
        let mut previous: &[u8] = &[];
        for (name, stats) in &mut self.entries {
            let name = name.as_bytes();
            let shared = name
                .iter()
                .zip(previous)
                .take_while(|(a, b)| a == b)
                .count();
            write_varint(bytes, shared as u64);
            write_varint(bytes, (name.len() - shared) as u64);
            bytes.extend_from_slice(&name[shared..]);
            stats.encode_entry(bytes);
            previous = name;
        }
    }

    /// Reads a breakdown written by [`Breakdown::encode`], or by versions before it (each name
    /// whole, each state as [`DayStats::encode`] writes it): the whole of `bytes`.
    pub fn decode(mut bytes: &[u8]) -> Result<Breakdown, CorruptState> {
        let shared_names = bytes.starts_with(&SHARED_NAMES);
        if shared_names {
            bytes = &bytes[SHARED_NAMES.len()..];
        }
        let bytes = &mut bytes;
        let count = read_varint(bytes)?;
        let mut entries: Vec<(Box<str>, DayStats)> =
            Vec::with_capacity(count.min(MOST_RESOURCES as u64 + 2) as usize);
        let mut name = Vec::new();
        for _ in 0..count {
            let shared = match shared_names {
                true => usize::try_from(read_varint(bytes)?).map_err(|_| CorruptState)?,
                false => 0,
            };
            if shared > name.len() {
                return Err(CorruptState);
            }
            name.truncate(shared);
            let len = usize::try_from(read_varint(bytes)?).map_err(|_| CorruptState)?;
            name.extend_from_slice(bytes.get(..len).ok_or(CorruptState)?);
            *bytes = &bytes[len..];
            let text = std::str::from_utf8(&name).map_err(|_| CorruptState)?;
            let stats = match shared_names {
                true => DayStats::decode_entry(bytes)?,
                false => DayStats::decode(bytes)?,
            };
            entries.push((text.into(), stats));
        }
        if !bytes.is_empty() || !entries.is_sorted_by(|a, b| a.0 < b.0) {
            return Err(CorruptState);
        }
        Ok(Breakdown { entries })
    }
}

/// What starts a breakdown whose names share their starts: an empty breakdown of the first
/// stored form is that first byte alone, so no breakdown of that form starts with both.
const SHARED_NAMES: [u8; 2] = [0, 2];

/// [`UNATTRIBUTED`] or [`OTHER`]: not a resource of its own, never capped.
fn is_special(name: &str) -> bool {
    name == UNATTRIBUTED || name == OTHER
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(path: &str) -> String {
        let mut out = String::new();
        resource_of(path.as_bytes(), &mut out);
        out
    }

    #[test]
    fn paths_become_resources() {
        assert_eq!(resource("/users/123/orders?page=2"), "/users/{id}/orders");
        assert_eq!(resource("/"), "/");
        assert_eq!(resource("/?x=1"), "/");
        assert_eq!(resource("///"), "/");
        assert_eq!(resource("/a/"), "/a");
        assert_eq!(resource("/a#top"), "/a");
        assert_eq!(resource("/a/b12/12b/0"), "/a/b12/12b/{id}");
        assert_eq!(
            resource("/o/0F8FAD5B-D9CB-469F-A165-70867728950E/x"),
            "/o/{id}/x"
        );
        assert_eq!(
            resource("/o/0F8FAD5B-D9CB-469F-A165-70867728950"),
            "/o/0F8FAD5B-D9CB-469F-A165-70867728950"
        );
        assert_eq!(resource("/a//b"), "/a//b");
        let mut out = String::new();
        resource_of(b"/caf\xe9", &mut out);
        assert_eq!(out, "/caf\u{fffd}");
        assert_eq!(resource(&format!("/{}", "a".repeat(300))), OTHER);
    }

    /// The definition, written the slow way.
    fn naive(path: &str) -> String {
        let path = path.split(['?', '#']).next().unwrap();
        let trimmed = path.trim_end_matches('/');
        let path = if trimmed.is_empty() { "/" } else { trimmed };
        let uuid = |s: &str| {
            let parts: Vec<&str> = s.split('-').collect();
            parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
                && parts
                    .iter()
                    .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
        };
        let resource: Vec<&str> = path
            .split('/')
            .map(
                |s| match (!s.is_empty() && s.chars().all(|c| c.is_ascii_digit())) || uuid(s) {
                    true => "{id}",
                    false => s,
                },
            )
            .collect();
        resource.join("/")
    }

    proptest::proptest! {
        #[test]
        fn any_path_becomes_the_resource_the_definition_gives(
            tail in "[/a1?#f-]{0,40}",
            uuid in "[0-9a-fA-F]{8}-[0-9a-f]{4}-[0-9A-F]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            at in 0usize..3,
        ) {
            let path = match at {
                0 => format!("/{tail}"),
                1 => format!("/{uuid}/{tail}"),
                _ => format!("/x/{tail}/{uuid}"),
            };
            let want = naive(&path);
            proptest::prop_assume!(want.len() <= LONGEST_RESOURCE);
            proptest::prop_assert_eq!(resource(&path), want, "{}", path);
        }
    }

    fn day(requests: &[(u16, u64)]) -> DayStats {
        let mut stats = DayStats::of_requests(requests);
        stats.compact();
        stats
    }

    fn named(count: usize, offset: usize) -> Breakdown {
        Breakdown::of((0..count).map(|i| (format!("/r{:05}", i + offset).into(), day(&[(200, 1)]))))
    }

    #[test]
    fn the_cap_keeps_the_names_that_sort_first_whatever_the_grouping() {
        let all = named(1500, 0);
        assert_eq!(all.entries().len(), MOST_RESOURCES + 1);
        assert_eq!(all.other_requests(), 500);
        // Disjoint parts, merged in an order where the first holds only names past the cap.
        let mut split = named(600, 900);
        split.merge(named(500, 0));
        split.merge(named(400, 500));
        assert!(split == all, "the same breakdown whatever the grouping");
        let total: u64 = all.entries().iter().map(|(_, s)| s.total()).sum();
        assert_eq!(total, 1500);
    }

    #[test]
    fn a_request_taken_back_leaves_its_resource_or_what_holds_it_now() {
        let mut breakdown = named(1001, 0);
        assert!(breakdown.remove("/r01000", 200, 1), "capped into (other)");
        assert_eq!(breakdown.other_requests(), 0);
        assert_eq!(breakdown.entries().len(), MOST_RESOURCES);
        assert!(breakdown.remove("/r00000", 200, 1));
        assert!(!breakdown.remove("/r00000", 200, 1));
    }

    #[test]
    fn a_breakdown_reads_back_as_written_and_damage_is_noticed() {
        let mut breakdown = named(3, 0);
        breakdown.merge(Breakdown::unattributed(day(&[(500, 7), (200, 9)])));
        let mut bytes = Vec::new();
        breakdown.encode(&mut bytes);
        assert_eq!(Breakdown::decode(&bytes).unwrap(), breakdown);
        assert!(Breakdown::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(!breakdown.is_unattributed());
        assert!(Breakdown::unattributed(day(&[(200, 1)])).is_unattributed());
    }

    /// The first stored form: the number of entries, then each name whole and each state as
    /// [`DayStats::encode`] writes it.
    fn first_form(breakdown: &mut Breakdown) -> Vec<u8> {
        let mut bytes = Vec::new();
        write_varint(&mut bytes, breakdown.entries.len() as u64);
        for (name, stats) in &mut breakdown.entries {
            write_varint(&mut bytes, name.len() as u64);
            bytes.extend_from_slice(name.as_bytes());
            stats.encode(&mut bytes);
        }
        bytes
    }

    proptest::proptest! {
        #[test]
        fn breakdowns_of_either_form_read_back_as_written(
            requests in proptest::collection::vec(
                (0usize..6, proptest::sample::select(vec![200u16, 201, 404, 503]), 0u64..5_000_000),
                0..60,
            ),
        ) {
            // Names that share starts of every length, one a start of another, one not ASCII.
            const NAMES: [&str; 6] = ["", "/a", "/api/v1/users", "/api/v1/users/{id}", "/api/v2", "/é/ü"];
            let mut breakdown = Breakdown::of(requests.iter().map(|&(name, status, duration)| {
                (NAMES[name].into(), DayStats::of_requests(&[(status, duration)]))
            }));
            let mut bytes = Vec::new();
            breakdown.encode(&mut bytes);
            // Equal states: counts, both sums and histograms.
            proptest::prop_assert_eq!(Breakdown::decode(&bytes).unwrap(), breakdown.clone());
            let first = first_form(&mut breakdown);
            proptest::prop_assert_eq!(Breakdown::decode(&first).unwrap(), breakdown.clone());
            if !breakdown.entries.is_empty() {
                proptest::prop_assert!(bytes.len() <= first.len() + SHARED_NAMES.len());
                proptest::prop_assert!(Breakdown::decode(&bytes[..bytes.len() - 1]).is_err());
            }
        }
    }
}
