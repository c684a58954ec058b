//! Disjoint parts of a hub's identity registry, so a large registry can be read by several
//! twin queries at once, each with its own continuation token.
//!
//! # Why the parts cover every device exactly once
//!
//! A [`Partition`] is a strictly increasing list of boundary strings `b1 < b2 < … < bn`, and
//! its parts are the half-open ranges of `deviceId`
//!
//! ```text
//! part 0: deviceId < b1
//! part i: bi <= deviceId AND deviceId < b(i+1)      (0 < i < n)
//! part n: bn <= deviceId
//! ```
//!
//! For any id `x`, let `i` be the number of boundaries `<= x`. Because the boundaries
//! increase, exactly those `b1..bi` are `<= x` and `b(i+1)..bn` are `> x`, so `x` satisfies
//! the condition of part `i` and of no other: every id is in exactly one part. This needs
//! nothing but a total order, which string comparison in the hub's query language is. The
//! order must be the same on both sides: IoT Hub device ids are case-sensitive strings of
//! 7-bit ASCII ([`DEVICE_ID_CHARACTERS`]), and for ASCII the ordinal order of characters,
//! of UTF-8 bytes and of UTF-16 code units is one and the same, so whatever encoding the hub
//! compares in, it orders ids as Rust's `str` comparison does. [`Partition::new`] refuses
//! boundaries that are not strictly increasing or hold a character outside that set, so
//! the argument above applies to every partition the reader can use. As a last guard the
//! reader checks that every twin a part returns lies in its part, and that the parts' counts
//! add up to the hub's count.
//!
//! # How the boundaries are chosen
//!
//! With `COUNT()` queries on ranges (one per split), walking the tree of id prefixes over
//! [`DEVICE_ID_CHARACTERS`]: a node is "ids that start with prefix `p`, next character in
//! `C[a..=b]`". A node holding too many devices is split in the middle of its character
//! interval (boundary `p + C[m]`, one count for the left half, the right half is the rest),
//! and a node whose interval is one character `c` becomes the node of prefix `p + c`. A
//! shared prefix (`device-0…` in many fleets) is found first from a sample of ids and
//! checked with one count, so the walk does not spend queries on it. Splits of different
//! nodes run concurrently, so planning takes a few round trips, not one per count.

use std::fmt;

use futures::future::join_all;

use crate::client::HubClient;
use crate::error::HubError;
use crate::twin::{decode_device_count, decode_twin_page};

/// Every character a device id may hold, in ASCII (ordinal) order: "A case-sensitive string
/// (up to 128 characters long) of ASCII 7-bit alphanumeric characters plus certain special
/// characters: `- . % _ * ? ! ( ) , : = @ $ '`", widened by the current wording of the same
/// property ("plus the following special characters: `- : . + % _ # * ? ! ( ) , = @ ; $ '`",
/// Azure IoT Hub identity registry, device identity properties,
/// <https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-identity-registry>, and the
/// `deviceId` of the Event Grid IoT Hub event schemas). The union is used: a boundary only
/// needs to be a string, so a wider set costs nothing and a narrower one could miss a split.
pub const DEVICE_ID_CHARACTERS: &str =
    "!#$%'()*+,-.0123456789:;=?@ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";

/// The longest device id.
pub const MAX_DEVICE_ID_LEN: usize = 128;

/// The most count queries one plan may spend: a bound on what planning costs a hub whose
/// ids defeat the prefix walk (e.g. all ids 128 characters long sharing 120 of them).
const MAX_PLANNING_COUNTS: usize = 256;

/// A range of device ids: `lower <= deviceId < upper`, each bound optional.
#[derive(Clone, PartialEq, Eq)]
pub struct IdRange {
    lower: Option<String>,
    upper: Option<String>,
}

impl fmt::Debug for IdRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}, {})",
            self.lower.as_deref().unwrap_or("-∞"),
            self.upper.as_deref().unwrap_or("+∞")
        )
    }
}

impl IdRange {
    /// Every id.
    pub fn whole() -> Self {
        IdRange {
            lower: None,
            upper: None,
        }
    }

    pub fn lower(&self) -> Option<&str> {
        self.lower.as_deref()
    }

    pub fn upper(&self) -> Option<&str> {
        self.upper.as_deref()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.lower.as_deref().is_none_or(|lower| lower <= id)
            && self.upper.as_deref().is_none_or(|upper| id < upper)
    }

    /// The `WHERE` clause of the range (empty for the whole registry).
    pub fn where_clause(&self) -> String {
        let mut conditions = Vec::new();
        if let Some(lower) = &self.lower {
            conditions.push(format!("deviceId >= {}", literal(lower)));
        }
        if let Some(upper) = &self.upper {
            conditions.push(format!("deviceId < {}", literal(upper)));
        }
        if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        }
    }

    /// The twin query of this range.
    pub fn twin_query(&self) -> String {
        format!("SELECT * FROM devices{}", self.where_clause())
    }

    /// The count query of this range.
    pub fn count_query(&self) -> String {
        format!(
            "SELECT COUNT() AS numberOfDevices FROM devices{}",
            self.where_clause()
        )
    }
}

/// A string literal of the query language. Boundaries hold only [`DEVICE_ID_CHARACTERS`],
/// which include `'` but never `"`: a boundary with a `'` is written in double quotes (the
/// language takes both), so no escaping is ever needed.
fn literal(text: &str) -> String {
    if text.contains('\'') {
        format!("\"{text}\"")
    } else {
        format!("'{text}'")
    }
}

/// Why boundaries cannot make a partition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartitionError {
    #[error("partition boundaries must increase strictly")]
    NotIncreasing,
    #[error("a partition boundary must be 1 to 128 device id characters")]
    NotADeviceIdString,
}

/// Disjoint ranges of device ids that together cover every possible id (see the module
/// documentation for the proof).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    boundaries: Vec<String>,
}

impl Partition {
    /// One part: the whole registry.
    pub fn single() -> Self {
        Partition {
            boundaries: Vec::new(),
        }
    }

    /// The partition cut at `boundaries`, which must increase strictly and be non-empty
    /// strings of device id characters.
    pub fn new(boundaries: Vec<String>) -> Result<Self, PartitionError> {
        for boundary in &boundaries {
            if boundary.is_empty()
                || boundary.len() > MAX_DEVICE_ID_LEN
                || !boundary.chars().all(|c| DEVICE_ID_CHARACTERS.contains(c))
            {
                return Err(PartitionError::NotADeviceIdString);
            }
        }
        if boundaries.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(PartitionError::NotIncreasing);
        }
        Ok(Partition { boundaries })
    }

    pub fn len(&self) -> usize {
        self.boundaries.len() + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn boundaries(&self) -> &[String] {
        &self.boundaries
    }

    /// The parts, in id order.
    pub fn parts(&self) -> Vec<IdRange> {
        let mut parts = Vec::with_capacity(self.len());
        let mut lower = None;
        for boundary in &self.boundaries {
            parts.push(IdRange {
                lower: lower.take(),
                upper: Some(boundary.clone()),
            });
            lower = Some(boundary.clone());
        }
        parts.push(IdRange { lower, upper: None });
        parts
    }

    /// The index of the part holding `id`: the number of boundaries `<= id`.
    pub fn part_of(&self, id: &str) -> usize {
        self.boundaries
            .partition_point(|boundary| boundary.as_str() <= id)
    }
}

/// A node of the prefix walk: ids in `[lower, next node's lower)`, all starting with
/// `prefix` followed by a character of `C[first..=last]` (or equal to the prefix).
#[derive(Clone, Debug)]
struct Node {
    lower: Option<String>,
    prefix: String,
    first: usize,
    last: usize,
    count: u64,
}

impl Node {
    fn splittable(&self) -> bool {
        self.first < self.last || self.prefix.len() < MAX_DEVICE_ID_LEN
    }
}

/// A partition and the number of devices the counts found in each part (an estimate: the
/// registry may change while it is read).
#[derive(Clone, Debug)]
pub struct PlannedPartition {
    pub partition: Partition,
    pub estimates: Vec<u64>,
}

/// Chooses boundaries so that each of about `parts` parts holds a similar number of the
/// `total` devices. `sample` is a few ids of the hub (any, e.g. a first page) used to skip a
/// shared prefix. Costs a few dozen count queries at most ([`MAX_PLANNING_COUNTS`]).
pub async fn plan_partition(
    client: &HubClient,
    total: u64,
    parts: usize,
    sample: &[String],
) -> Result<PlannedPartition, HubError> {
    let single = PlannedPartition {
        partition: Partition::single(),
        estimates: vec![total],
    };
    if parts <= 1 || total == 0 {
        return Ok(single);
    }
    let alphabet: Vec<char> = DEVICE_ID_CHARACTERS.chars().collect();
    let target = total.div_ceil(parts as u64);
    // Leaves are made finer than the parts, so grouping them lands near the target.
    let leaf_target = target.div_ceil(2).max(1);
    let mut counts_spent = 0usize;

    let prefix = shared_prefix(client, total, sample, &mut counts_spent).await?;
    let mut leaves = vec![Node {
        lower: None,
        prefix,
        first: 0,
        last: alphabet.len() - 1,
        count: total,
    }];
    loop {
        // Nodes of one character descend for free; then every node still too large is
        // split, all of them concurrently.
        for node in &mut leaves {
            while node.count > leaf_target
                && node.first == node.last
                && node.prefix.len() < MAX_DEVICE_ID_LEN
            {
                node.prefix.push(alphabet[node.first]);
                node.first = 0;
                node.last = alphabet.len() - 1;
            }
        }
        let to_split: Vec<usize> = leaves
            .iter()
            .enumerate()
            .filter(|(_, node)| node.count > leaf_target && node.first < node.last)
            .map(|(index, _)| index)
            .collect();
        if to_split.is_empty() || counts_spent + to_split.len() > MAX_PLANNING_COUNTS {
            break;
        }
        counts_spent += to_split.len();
        let splits = to_split.iter().map(|&index| {
            let node = &leaves[index];
            let middle = node.first + (node.last - node.first).div_ceil(2);
            let boundary = format!("{}{}", node.prefix, alphabet[middle]);
            let left = IdRange {
                lower: node.lower.clone(),
                upper: Some(boundary.clone()),
            };
            async move {
                let count = count_range(client, &left).await?;
                Ok::<_, HubError>((middle, boundary, count))
            }
        });
        let results = join_all(splits).await;
        // Apply from the back so earlier indexes stay valid while inserting.
        for (&index, result) in to_split.iter().zip(results).rev() {
            let (middle, boundary, left_count) = result?;
            let node = leaves[index].clone();
            let left_count = left_count.min(node.count);
            let left = Node {
                last: middle - 1,
                count: left_count,
                ..node.clone()
            };
            let right = Node {
                lower: Some(boundary),
                first: middle,
                count: node.count - left_count,
                ..node
            };
            leaves[index] = left;
            leaves.insert(index + 1, right);
        }
        if leaves.iter().all(|node| !node.splittable()) {
            break;
        }
    }

    // Consecutive leaves are grouped into parts of about `target` devices; a part starts at
    // its first leaf's lower bound, so the parts stay consecutive and cover everything.
    let mut boundaries = Vec::new();
    let mut estimates = Vec::new();
    let mut in_part = 0u64;
    for node in &leaves {
        if in_part >= target && node.count > 0 {
            if let Some(lower) = &node.lower {
                boundaries.push(lower.clone());
                estimates.push(in_part);
                in_part = 0;
            }
        }
        in_part += node.count;
    }
    estimates.push(in_part);
    // The walk only makes increasing boundaries of device id characters; were that ever
    // not so, one part is still a correct read.
    match Partition::new(boundaries) {
        Ok(partition) => Ok(PlannedPartition {
            partition,
            estimates,
        }),
        Err(err) => {
            tracing::warn!(%err, "the planned partition was refused; reading with one reader");
            Ok(single)
        }
    }
}

/// The longest prefix all ids share, guessed from the sample and confirmed with count
/// queries (the longest confirmed candidate wins); empty when none is confirmed.
async fn shared_prefix(
    client: &HubClient,
    total: u64,
    sample: &[String],
    counts_spent: &mut usize,
) -> Result<String, HubError> {
    let Some(first) = sample.first() else {
        return Ok(String::new());
    };
    let mut common = first.len();
    for id in &sample[1..] {
        common = common.min(
            first
                .bytes()
                .zip(id.bytes())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    let candidate: String = first
        .chars()
        .take(common)
        .take_while(|c| DEVICE_ID_CHARACTERS.contains(*c))
        .collect();
    // Binary search on the prefix length: a prefix that all `total` ids share stays shared
    // when shortened, so "shared" is monotonic in the length.
    let (mut good, mut bad) = (0usize, candidate.len() + 1);
    while good + 1 < bad && *counts_spent < MAX_PLANNING_COUNTS {
        let length = (good + bad) / 2;
        let prefix = &candidate[..length];
        *counts_spent += 1;
        let range = IdRange {
            lower: Some(prefix.to_owned()),
            upper: prefix_successor(prefix),
        };
        if count_range(client, &range).await? >= total {
            good = length;
        } else {
            bad = length;
        }
    }
    Ok(candidate[..good].to_owned())
}

/// The smallest device id string above every id starting with `prefix` (its last character
/// moved to the next one of [`DEVICE_ID_CHARACTERS`]), if any.
fn prefix_successor(prefix: &str) -> Option<String> {
    let mut text = prefix.to_owned();
    while let Some(last) = text.pop() {
        let position = DEVICE_ID_CHARACTERS.find(last)?;
        if let Some(next) = DEVICE_ID_CHARACTERS[position + 1..].chars().next() {
            text.push(next);
            return Some(text);
        }
    }
    None
}

/// The number of devices in a range.
pub async fn count_range(client: &HubClient, range: &IdRange) -> Result<u64, HubError> {
    let page = client.fetch_page(&range.count_query(), None).await?;
    decode_device_count(&page.body).map_err(|e| HubError::Protocol {
        host: client.host_name().to_owned(),
        reason: format!("a device count could not be read: {e}"),
    })
}

/// Up to one page of device ids, as a sample for [`plan_partition`].
pub async fn sample_ids(client: &HubClient) -> Result<Vec<String>, HubError> {
    let page = client.fetch_page("SELECT * FROM devices", None).await?;
    let twins = decode_twin_page(&page.body).map_err(|e| HubError::Protocol {
        host: client.host_name().to_owned(),
        reason: format!("a page of twins could not be read: {e}"),
    })?;
    Ok(twins.into_iter().map(|twin| twin.device_id).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_alphabet_is_the_documented_set_in_ordinal_order() {
        let mut sorted: Vec<char> = DEVICE_ID_CHARACTERS.chars().collect();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.iter().collect::<String>(), DEVICE_ID_CHARACTERS);
        assert_eq!(sorted.len(), 26 + 26 + 10 + 18);
        for special in "-:.+%_#*?!(),=@;$'".chars() {
            assert!(DEVICE_ID_CHARACTERS.contains(special), "{special}");
        }
        assert!(sorted.iter().all(|c| c.is_ascii_graphic()));
    }

    #[test]
    fn bad_boundaries_are_refused() {
        let b = |v: &[&str]| Partition::new(v.iter().map(|s| s.to_string()).collect());
        assert_eq!(b(&["b", "a"]), Err(PartitionError::NotIncreasing));
        assert_eq!(b(&["a", "a"]), Err(PartitionError::NotIncreasing));
        assert_eq!(b(&[""]), Err(PartitionError::NotADeviceIdString));
        assert_eq!(b(&["a b"]), Err(PartitionError::NotADeviceIdString));
        assert_eq!(b(&["a\""]), Err(PartitionError::NotADeviceIdString));
        assert!(b(&["'", "a'b", "z"]).is_ok());
    }

    #[test]
    fn queries_quote_every_boundary_safely() {
        let partition = Partition::new(vec!["a'b".into(), "m".into()]).unwrap();
        let parts = partition.parts();
        assert_eq!(
            parts[0].twin_query(),
            "SELECT * FROM devices WHERE deviceId < \"a'b\""
        );
        assert_eq!(
            parts[1].twin_query(),
            "SELECT * FROM devices WHERE deviceId >= \"a'b\" AND deviceId < 'm'"
        );
        assert_eq!(
            parts[2].count_query(),
            "SELECT COUNT() AS numberOfDevices FROM devices WHERE deviceId >= 'm'"
        );
        assert_eq!(
            Partition::single().parts()[0].twin_query(),
            "SELECT * FROM devices"
        );
    }

    #[test]
    fn every_single_character_id_is_in_exactly_one_part() {
        // Cut before every character: each one-character id has a part of its own.
        let boundaries: Vec<String> = DEVICE_ID_CHARACTERS
            .chars()
            .skip(1)
            .map(String::from)
            .collect();
        let partition = Partition::new(boundaries).unwrap();
        let parts = partition.parts();
        for (index, c) in DEVICE_ID_CHARACTERS.chars().enumerate() {
            let id = c.to_string();
            let holders: Vec<usize> = (0..parts.len())
                .filter(|&p| parts[p].contains(&id))
                .collect();
            assert_eq!(holders, vec![index], "{id}");
        }
    }

    #[test]
    fn successor_of_a_prefix_bounds_its_ids() {
        assert_eq!(prefix_successor("abc").as_deref(), Some("abd"));
        assert_eq!(prefix_successor("az").as_deref(), Some("b"));
        assert_eq!(prefix_successor("zz"), None);
        assert_eq!(prefix_successor("device-0").as_deref(), Some("device-1"));
    }

    fn device_id() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            proptest::sample::select(DEVICE_ID_CHARACTERS.as_bytes().to_vec()),
            1..=MAX_DEVICE_ID_LEN,
        )
        .prop_map(|bytes| String::from_utf8(bytes).unwrap_or_default())
    }

    proptest! {
        /// The proof of the module documentation, checked on arbitrary partitions and ids:
        /// every id satisfies the range of exactly one part, and it is the part `part_of`
        /// names.
        #[test]
        fn every_id_is_in_exactly_one_part(
            mut boundaries in proptest::collection::vec(device_id(), 0..24),
            ids in proptest::collection::vec(device_id(), 1..64),
        ) {
            boundaries.sort();
            boundaries.dedup();
            let partition = Partition::new(boundaries.clone()).unwrap();
            let parts = partition.parts();
            prop_assert_eq!(parts.len(), boundaries.len() + 1);
            // Consecutive: each part starts where the previous ends; the ends are open.
            prop_assert!(parts[0].lower().is_none());
            prop_assert!(parts[parts.len() - 1].upper().is_none());
            for pair in parts.windows(2) {
                prop_assert_eq!(pair[0].upper(), pair[1].lower());
            }
            for id in ids.iter().chain(boundaries.iter()) {
                let holders: Vec<usize> =
                    (0..parts.len()).filter(|&p| parts[p].contains(id)).collect();
                prop_assert_eq!(holders, vec![partition.part_of(id)]);
            }
        }
    }
}
